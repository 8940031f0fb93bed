"""Pure-torch reference of the L1 weight projection (design.md section 6, paper eq. 8).

For a classifier with weight W (K, n) (nn.Linear layout: row c is class c's W^c) and the batch
x (N, n) that fed it, every row is rescaled radially to

    ||W^c||_1 = r = N / (K * sum_i ||x_i||_1).

A zero row stays zero and a row holding NaN or Inf stays as it is (scaled, r / inf x inf is
NaN); a batch whose total L1 norm is zero or not finite, or so small that r
overflows W's dtype (a batch of denormals), leaves W unchanged. A row of tiny norm whose factor
r / ||W^c||_1 overflows W's dtype is scaled in float64 (an infinite factor would make its zeros
NaN).
"""

from __future__ import annotations

import torch


@torch.no_grad()
def l1_project_reference_(weight: torch.Tensor,  # (K, n), modified in place
                          x: torch.Tensor,  # (N, n)
                          ) -> torch.Tensor:
    K = weight.shape[0]
    total = x.abs().sum(dtype=torch.float64)
    r = x.shape[0] / (K * total)
    norms = weight.abs().sum(dim=1, keepdim=True, dtype=torch.float64)
    scalable = (norms > 0) & torch.isfinite(norms)  # (a row holding NaN / Inf: as it is)
    factor = torch.where(scalable, r / norms, torch.ones_like(norms))
    usable = (total > 0) & torch.isfinite(total) & (r <= torch.finfo(weight.dtype).max)
    factor = torch.where(usable, factor, torch.ones_like(factor))
    factor_w = factor.to(weight.dtype)
    if bool(torch.isfinite(factor_w).all()):
        weight.mul_(factor_w)
    else:  # a row of tiny norm: its factor overflows the weight's dtype (0 x inf = NaN)
        weight.copy_(weight.double() * factor)
    return weight


def l1_project_fake_(weight, x):
    """The fake (meta) kernel of the registered in-place ops, native (native.py) and Triton
    (triton.py): nothing to return, the weight is changed in place."""
    return None
