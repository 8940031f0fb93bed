"""C++ backend of the SSA core: fake (meta) kernels of the registered ops.

Dtype rule of the native ops: float32 or float64, every input of h_em's dtype (the backward casts
the others to it); outputs contiguous, in h_em's dtype.
"""

from __future__ import annotations

import torch

from ..._backend import extension_status

if extension_status()[0]:

    @torch.library.register_fake("ssa_fast::ssa_core_fwd")
    def _(h_em, h_sp, qk_em, qk_sp, scale):
        B, T, d = h_em.shape
        return (h_em.new_empty(B, d), h_em.new_empty(B, d), h_em.new_empty(B, 2 * T),
                h_em.new_empty(B))

    # The kernel's outputs are new contiguous tensors in h_em's dtype, whatever the strides of
    # the inputs (autograd hands over non-contiguous gradients): so are the fake ones.
    @torch.library.register_fake("ssa_fast::ssa_core_bwd")
    def _(h_em, h_sp, qk_em, qk_sp, alpha, p_em, p_sp, dp_em, dp_sp, dalpha, scale):
        B, T, d = h_em.shape
        return (h_em.new_empty(B, T, d), h_em.new_empty(B, T, d), h_em.new_empty(B, d),
                h_em.new_empty(B, d))


def ssa_core_fwd_cpp(h_em, h_sp, qk_em, qk_sp, scale):
    return torch.ops.ssa_fast.ssa_core_fwd(h_em, h_sp, qk_em, qk_sp, scale)


def ssa_core_bwd_cpp(h_em, h_sp, qk_em, qk_sp, alpha, p_em, p_sp, dp_em, dp_sp, dalpha, scale):
    return torch.ops.ssa_fast.ssa_core_bwd(h_em, h_sp, qk_em, qk_sp, alpha, p_em, p_sp, dp_em,
                                           dp_sp, dalpha, scale)
