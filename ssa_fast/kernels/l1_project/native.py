"""Native backend of the L1 projection: the extension's in-place op (C++ CPU kernel), and its
fake kernel."""

from __future__ import annotations

import torch

from ..._backend import extension_status
from .reference import l1_project_fake_

if extension_status()[0]:
    torch.library.register_fake("ssa_fast::l1_project_")(l1_project_fake_)


# The extension's op has no ADInplaceOrView kernel, so autograd did not see its change: a
# backward through a graph that saved the weight before the projection used the projected weight
# without a word (the other backends raise "modified by an inplace operation"), eager or
# compiled. Called through a custom op that declares the mutation, it is seen in both, as the
# Triton op is.
@torch.library.custom_op("ssa_fast::l1_project_cpp_", mutates_args=("weight",))
def l1_project_native_op_(weight: torch.Tensor, x: torch.Tensor) -> None:
    torch.ops.ssa_fast.l1_project_(weight, x)


l1_project_native_op_.register_fake(l1_project_fake_)


def l1_project_native_(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    l1_project_native_op_(weight, x)
    return weight
