"""Triton kernel of the L1 weight projection: one launch. Every program sums |x| itself (x is the
classifier's small input batch) and rescales its own block of weight rows."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._triton_common import NUM_WARPS, device_guard, l1_launch
from .reference import l1_project_fake_


@triton.jit
def _l1_project_kernel(w_ptr, x_ptr, K, n, x_numel, N_over_K, W_MAX,
                       BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_X: tl.constexpr):
    pid = tl.program_id(0)
    # float64 like the other backends: a batch of large finite values must not overflow the sum.
    total = tl.zeros((BLOCK_X,), tl.float64)
    for i0 in range(0, x_numel, BLOCK_X):
        offs = i0 + tl.arange(0, BLOCK_X)
        total += tl.abs(tl.load(x_ptr + offs, mask=offs < x_numel, other=0.0).to(tl.float64))
    total_sum = tl.sum(total, axis=0)
    rows = pid * BLOCK_K + tl.arange(0, BLOCK_K)
    cols = tl.arange(0, BLOCK_N)
    mask = (rows[:, None] < K) & (cols[None, :] < n)
    ptrs = w_ptr + rows[:, None] * n + cols[None, :]
    w = tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)
    norms = tl.sum(tl.abs(w.to(tl.float64)), axis=1)
    usable = (total_sum > 0) & (total_sum < float("inf"))  # else leave the weight as it is
    r = N_over_K / tl.where(usable, total_sum, 1.0)
    usable = usable & (r <= W_MAX)  # (a target norm the weight's dtype cannot hold: unchanged)
    # (a zero row stays zero; a row holding NaN or Inf stays as it is: r / inf x inf is NaN)
    scalable = (norms > 0) & (norms < float("inf"))
    factor = tl.where(scalable, r / tl.where(scalable, norms, 1.0), 1.0)
    factor = tl.where(usable, factor, 1.0)
    factor32 = factor.to(tl.float32)
    # a row of tiny norm: its factor overflows float32 (0 x inf = NaN), so it is scaled in float64
    wide = w.to(tl.float64) * factor[:, None]
    scaled = tl.where((tl.abs(factor32) < float("inf"))[:, None], w * factor32[:, None], wide)
    tl.store(ptrs, scaled.to(w_ptr.dtype.element_ty), mask=mask)


def _overlaps(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``a`` and ``b`` share storage (real tensors: inside the op)."""
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def l1_project_triton_(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    K, n = weight.shape
    if not weight.is_contiguous():
        raise ValueError("weight must be contiguous for the triton backend")
    # x in the weight's own memory (l1_project_(w, w)): every program sums all of x while the
    # others rescale their rows of it, so the sum would read half-projected rows
    x = x.clone() if _overlaps(x, weight) else x.contiguous()
    launch = l1_launch(K, n, x.numel())
    with device_guard(weight):
        _l1_project_kernel[launch.grid](
            weight, x, K, n, x.numel(), float(x.shape[0]) / K, torch.finfo(weight.dtype).max,
            BLOCK_K=launch.block_k, BLOCK_N=launch.block_n, BLOCK_X=launch.block_x,
            num_warps=NUM_WARPS)
    return weight


@torch.library.custom_op("ssa_fast::l1_project_triton_", mutates_args=("weight",))
def l1_project_triton_op_(weight: torch.Tensor, x: torch.Tensor) -> None:
    l1_project_triton_(weight, x)


l1_project_triton_op_.register_fake(l1_project_fake_)
