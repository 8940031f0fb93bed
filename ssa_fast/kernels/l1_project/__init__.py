"""L1 weight projection (design.md section 6): public function and input validation."""

from __future__ import annotations

import torch

from ... import _backend
from . import native as _native  # noqa: F401  (registers the fake kernels of the native ops)
from .function import KERNELS, l1_project_apply
from .reference import l1_project_reference_

__all__ = ["l1_project_", "l1_project_reference_"]


def l1_project_(weight: torch.Tensor, x: torch.Tensor, backend: str | None = None) -> torch.Tensor:
    """Rescale every row of ``weight`` (K, n) in place to L1 norm ``N / (K * sum_i ||x_i||_1)``.

    ``weight`` is a classifier's weight as nn.Linear stores it (row c belongs to class c) and
    ``x`` (N, n) the batch that fed the layer (detached). A zero row stays zero, a row holding
    NaN or Inf stays as it is, a batch whose total L1 norm is zero or not finite leaves the
    weight unchanged, and no NaN is ever produced where there was none.
    Returns ``weight``.
    """
    for name, t in (("weight", weight), ("x", x)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if weight.dim() != 2:
        raise ValueError(f"weight must be a 2-D tensor (K classes, n inputs), got "
                         f"{tuple(weight.shape)}")
    if x.dim() != 2:
        raise ValueError(f"x must be a 2-D tensor (N samples, n inputs), got {tuple(x.shape)}")
    if not weight.is_floating_point() or not x.is_floating_point():
        raise TypeError(f"weight and x must be floating point, got {weight.dtype}, {x.dtype}")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"x has {x.shape[1]} features but weight has {weight.shape[1]} inputs "
                         f"(shapes {tuple(x.shape)} and {tuple(weight.shape)})")
    if x.shape[0] == 0 or weight.shape[0] == 0:
        raise ValueError(f"need at least one sample and one class, got x {tuple(x.shape)}, "
                         f"weight {tuple(weight.shape)}")
    if x.device != weight.device:
        raise ValueError(f"x is on {x.device} but weight is on {weight.device}")
    name = _backend.resolve(KERNELS, weight.device, backend, weight.dtype)
    # the cpp kernel takes float32 / float64 weights: a half-precision one is projected in
    # float32; so is one whose dtype cannot hold x (x is cast to the weight's dtype: an fp16
    # weight beside float32 activations over 65504 would read an infinite norm and stay as it is)
    half = weight.dtype not in (torch.float32, torch.float64)
    widen = half and (name == "cpp" or torch.finfo(x.dtype).max > torch.finfo(weight.dtype).max)
    if weight.is_contiguous() and not widen:
        return l1_project_apply(name, weight, x.detach())
    # The kernels work on contiguous rows: project a contiguous (or float32) copy and write it
    # back.
    with torch.no_grad():
        work = weight.float() if widen else weight.contiguous()
        projected = l1_project_apply(name, work, x.detach())
        if widen:  # (the kernels check the target norm against float32's range, not the
            # weight's: a norm beyond it leaves the weight unchanged, as in its own dtype)
            total = x.detach().abs().sum(dtype=torch.float64)
            r = x.shape[0] / (weight.shape[0] * total)
            # (the kernels project in place: ``work`` is ``projected``; the weight is intact)
            projected = torch.where(r <= torch.finfo(weight.dtype).max, projected, weight)
        weight.copy_(projected)
    return weight
