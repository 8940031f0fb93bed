"""Native backend of the SSA core: the extension's ops (C++ CPU kernels), and their fake kernels.

Dtype rule of the native ops: float32 or float64, every input of h_em's dtype (the backward casts
the others to it); outputs contiguous, in h_em's dtype.
"""

from __future__ import annotations

import torch

from ..._backend import extension_status
from .reference import ssa_core_bwd_fake, ssa_core_fwd_fake

if extension_status()[0]:
    torch.library.register_fake("ssa_fast::ssa_core_fwd")(ssa_core_fwd_fake)
    torch.library.register_fake("ssa_fast::ssa_core_bwd")(ssa_core_bwd_fake)


def ssa_core_fwd_native(h_em, h_sp, qk_em, qk_sp, scale):
    return torch.ops.ssa_fast.ssa_core_fwd(h_em, h_sp, qk_em, qk_sp, scale)


def ssa_core_bwd_native(h_em, h_sp, qk_em, qk_sp, alpha, p_em, p_sp, dp_em, dp_sp, dalpha, scale):
    return torch.ops.ssa_fast.ssa_core_bwd(h_em, h_sp, qk_em, qk_sp, alpha, p_em, p_sp, dp_em,
                                           dp_sp, dalpha, scale)
