"""Dispatch of the L1 projection. It is a projection applied after an optimiser step, outside
autograd (it runs under no_grad), so there is no backward."""

from __future__ import annotations

import torch

from .reference import l1_project_reference_


@torch.no_grad()
def run_backend(backend: str, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if backend == "cpp":
        from .cpp import l1_project_cpp_

        return l1_project_cpp_(weight, x)
    if backend == "triton":
        from .triton import l1_project_triton_op_

        l1_project_triton_op_(weight, x)
        return weight
    return l1_project_reference_(weight, x)
