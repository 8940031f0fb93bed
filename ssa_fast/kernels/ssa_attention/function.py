"""The autograd boundary of Self Speaker Attention.

Around the fused core (scores -> softmax -> weighted sums over the 2T rows) only small matrix
products remain, done here in torch: q = h_em^T w_q, qk = q W_k^T, c = p W_v, and their gradients.
"""

from __future__ import annotations

import torch

from .reference import combine_outputs, ssa_core_backward_reference, ssa_core_reference

_NATIVE = (torch.float32, torch.float64)


def core_forward(backend: str, h_em, h_sp, qk_em, qk_sp, scale: float):
    if backend == "cpp":
        from .cpp import ssa_core_fwd_cpp

        return ssa_core_fwd_cpp(h_em, h_sp, qk_em, qk_sp, scale)
    if backend == "triton":
        from . import triton as _triton  # registers the op

        return _triton.ssa_core_fwd_triton_op(h_em, h_sp, qk_em, qk_sp, scale)
    return ssa_core_reference(h_em, h_sp, qk_em, qk_sp, scale)


def core_backward(backend: str, *args):
    if backend == "cpp":
        from .cpp import ssa_core_bwd_cpp

        return ssa_core_bwd_cpp(*args)
    if backend == "triton":
        from . import triton as _triton

        return _triton.ssa_core_bwd_triton_op(*args)
    return ssa_core_backward_reference(*args)


class SSAAttentionFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp, scale, combine, backend):
        dtype = h_em.dtype
        # The C++ kernels compute in float32/float64; other dtypes (bf16 under autocast) go
        # through float32.
        work = dtype if (backend != "cpp" or dtype in _NATIVE) else torch.float32
        he, hs = h_em.to(work), h_sp.to(work)
        q = torch.einsum("btd,t->bd", he, w_q.to(work))  # (B, d)
        qk_em = q @ w_k_em.to(work).T
        qk_sp = q @ w_k_sp.to(work).T
        p_em, p_sp, alpha, _ = core_forward(backend, he, hs, qk_em, qk_sp, scale)
        p_em, p_sp, alpha = p_em.to(dtype), p_sp.to(dtype), alpha.to(dtype)
        c = combine_outputs(p_em @ w_v_em, p_sp @ w_v_sp, combine)
        ctx.save_for_backward(h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp, q, qk_em, qk_sp,
                              p_em, p_sp, alpha)
        ctx.scale, ctx.combine, ctx.backend, ctx.work = scale, combine, backend, work
        return c, alpha

    @staticmethod
    def backward(ctx, dc, dalpha):
        (h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp, q, qk_em, qk_sp, p_em, p_sp,
         alpha) = ctx.saved_tensors
        B, T, d = h_em.shape
        work = ctx.work
        if dc is None:
            dc = h_em.new_zeros(B, 2 * d if ctx.combine == "concat" else d)
        if dalpha is None:
            dalpha = alpha.new_zeros(alpha.shape)
        dc_em, dc_sp = (dc[:, :d], dc[:, d:]) if ctx.combine == "concat" else (dc, dc)
        dw_v_em, dw_v_sp = p_em.T @ dc_em, p_sp.T @ dc_sp
        dp_em, dp_sp = dc_em @ w_v_em.T, dc_sp @ w_v_sp.T
        dh_em, dh_sp, dqk_em, dqk_sp = core_backward(
            ctx.backend, h_em.to(work), h_sp.to(work), qk_em, qk_sp, alpha.to(work),
            p_em.to(work), p_sp.to(work), dp_em.to(work), dp_sp.to(work), dalpha.to(work),
            ctx.scale)
        # qk = q W_k^T and q = h_em^T w_q
        dq = dqk_em @ w_k_em.to(work) + dqk_sp @ w_k_sp.to(work)
        dw_k_em, dw_k_sp = dqk_em.T @ q, dqk_sp.T @ q
        dh_em = dh_em + w_q.to(work)[None, :, None] * dq[:, None, :]
        dw_q = torch.einsum("btd,bd->t", h_em.to(work), dq)
        return (dh_em.to(h_em.dtype), dh_sp.to(h_sp.dtype), dw_q.to(w_q.dtype),
                dw_k_em.to(w_k_em.dtype), dw_k_sp.to(w_k_sp.dtype), dw_v_em, dw_v_sp,
                None, None, None)

