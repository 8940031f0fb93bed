"""Dispatch of the L1 projection. It is a projection applied after an optimiser step, outside
autograd (it runs under no_grad), so the table has no backward.

Dtype rule (the one place it is decided): the weight is rescaled in place in its own dtype (the
cpp kernel takes float32 / float64 weights: l1_project_ gives it a float32 copy of a half-precision
one and writes the result back; the triton backend takes float16 / bfloat16 too); x is cast
to the weight's dtype (under autocast the classifier's inputs are bf16 while its weight stays
float32); the norms are summed in float64 by every backend, so a large batch cannot overflow.
"""

from __future__ import annotations

import torch

from .._dispatch import BackendTable, Impl

KERNELS = BackendTable("l1_project_", __package__, {
    "reference": Impl("reference.l1_project_reference_"),
    "cpp": Impl("native.l1_project_native_"),
    "triton": Impl("triton.l1_project_triton_op_"),
})


@torch.no_grad()
def l1_project_apply(backend: str, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Project `weight` (contiguous) in place on `backend`; returns it."""
    KERNELS.forward(backend)(weight, x.to(weight.dtype))
    return weight
