"""C++ backend of the L1 projection: fake kernel of the registered in-place op."""

from __future__ import annotations

import torch

from ..._backend import extension_status

if extension_status()[0]:

    @torch.library.register_fake("ssa_fast::l1_project_")
    def _(weight, x):
        return None


def l1_project_cpp_(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    torch.ops.ssa_fast.l1_project_(weight, x)
    return weight
