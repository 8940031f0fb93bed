"""Native backend of the L1 projection: the extension's in-place op (C++ CPU kernel), and its
fake kernel."""

from __future__ import annotations

import torch

from ..._backend import extension_status
from .reference import l1_project_fake_

if extension_status()[0]:
    torch.library.register_fake("ssa_fast::l1_project_")(l1_project_fake_)


def l1_project_native_(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    torch.ops.ssa_fast.l1_project_(weight, x)
    # the extension registers no ADInplaceOrView kernel, so autograd did not see the change:
    # a backward through a graph that saved the weight before the projection used the projected
    # weight without a word (the other backends raise "modified by an inplace operation");
    # under torch.compile the mutation of a graph input is applied and counted by torch itself
    if not torch.compiler.is_compiling():
        torch.autograd.graph.increment_version(weight)
    return weight
