"""Pure-torch references of Self Speaker Attention (design.md section 5, paper eq. 3-7).

Paper-literal form (keys and values materialised)::

    q       = h_em^T w_q                        (B, d)      w_q (T,)
    k_x,t   = h_x,t W_k_x,   v_x,t = h_x,t W_v_x   (B, T, d)   x in {em, sp}, W (d, d)
    s_x,t   = scale * q . k_x,t                 (B, T)      scale = 1 / sqrt(T) by default
    alpha   = softmax([s_em ; s_sp])            (B, 2T)     self and speaker rows compete
    c_x     = sum_t alpha_{x,t} v_x,t           (B, d)
    c       = [c_em ; c_sp] (concat, (B, 2d))  or  c_em + c_sp (sum, (B, d))

Fast form (exact algebra; what the kernels compute): with qk_x = W_k_x q,
s_x,t = scale * h_x,t . qk_x; p_x = sum_t alpha_{x,t} h_x,t; c_x = p_x W_v_x.
The "core" is the part between: (h_em, h_sp, qk_em, qk_sp) -> (p_em, p_sp, alpha, lse).
"""

from __future__ import annotations

import torch


def combine_outputs(c_em: torch.Tensor, c_sp: torch.Tensor, combine: str) -> torch.Tensor:
    """c = [c_em ; c_sp] (B, 2d) for "concat", c_em + c_sp (B, d) for "sum"."""
    return torch.cat([c_em, c_sp], dim=-1) if combine == "concat" else c_em + c_sp


def ssa_attention_literal(h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp, scale, combine):
    """Paper-literal SSA: the baseline the fast form must agree with to rounding."""
    q = torch.einsum("btd,t->bd", h_em, w_q)
    k_em, k_sp = h_em @ w_k_em, h_sp @ w_k_sp  # (B, T, d)
    v_em, v_sp = h_em @ w_v_em, h_sp @ w_v_sp
    s = torch.cat([torch.einsum("bd,btd->bt", q, k_em), torch.einsum("bd,btd->bt", q, k_sp)], 1)
    alpha = torch.softmax(s * scale, dim=-1)  # (B, 2T)
    T = h_em.shape[1]
    c_em = torch.einsum("bt,btd->bd", alpha[:, :T], v_em)
    c_sp = torch.einsum("bt,btd->bd", alpha[:, T:], v_sp)
    return combine_outputs(c_em, c_sp, combine), alpha


def ssa_attention_fast(h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp, scale, combine):
    """The fast form in plain torch (autograd by torch): the `reference` backend."""
    q = torch.einsum("btd,t->bd", h_em, w_q)
    p_em, p_sp, alpha, _ = ssa_core_reference(h_em, h_sp, q @ w_k_em.T, q @ w_k_sp.T, scale)
    return combine_outputs(p_em @ w_v_em, p_sp @ w_v_sp, combine), alpha


def ssa_core_reference(
    h_em: torch.Tensor,  # (B, T, d)
    h_sp: torch.Tensor,  # (B, T, d)
    qk_em: torch.Tensor,  # (B, d)
    qk_sp: torch.Tensor,  # (B, d)
    scale: float,
):  # -> p_em (B, d), p_sp (B, d), alpha (B, 2T), lse (B,)
    """Single-query attention over the 2T rows of [h_em ; h_sp] with two query vectors."""
    s = torch.cat([torch.einsum("btd,bd->bt", h_em, qk_em),
                   torch.einsum("btd,bd->bt", h_sp, qk_sp)], dim=1) * scale
    lse = torch.logsumexp(s, dim=-1)
    alpha = torch.exp(s - lse[:, None])
    T = h_em.shape[1]
    p_em = torch.einsum("bt,btd->bd", alpha[:, :T], h_em)
    p_sp = torch.einsum("bt,btd->bd", alpha[:, T:], h_sp)
    return p_em, p_sp, alpha, lse


def ssa_core_backward_reference(h_em, h_sp, qk_em, qk_sp, alpha, p_em, p_sp, dp_em, dp_sp,
                                dalpha, scale):
    """Gradients of the core: (dh_em, dh_sp, dqk_em, dqk_sp).

    dalpha_t = h_t . dp + dalpha_out_t;  ds = alpha * (dalpha - D),
    D = sum_t alpha_t dalpha_t = p_em . dp_em + p_sp . dp_sp + alpha . dalpha_out;
    dh_t = alpha_t dp + scale * ds_t qk;  dqk = scale * sum_t ds_t h_t.
    """
    T = h_em.shape[1]
    a_em, a_sp = alpha[:, :T], alpha[:, T:]
    D = (p_em * dp_em).sum(-1) + (p_sp * dp_sp).sum(-1) + (alpha * dalpha).sum(-1)  # (B,)
    ds_em = a_em * (torch.einsum("btd,bd->bt", h_em, dp_em) + dalpha[:, :T] - D[:, None])
    ds_sp = a_sp * (torch.einsum("btd,bd->bt", h_sp, dp_sp) + dalpha[:, T:] - D[:, None])
    dh_em = a_em[..., None] * dp_em[:, None] + scale * ds_em[..., None] * qk_em[:, None]
    dh_sp = a_sp[..., None] * dp_sp[:, None] + scale * ds_sp[..., None] * qk_sp[:, None]
    dqk_em = scale * torch.einsum("bt,btd->bd", ds_em, h_em)
    dqk_sp = scale * torch.einsum("bt,btd->bd", ds_sp, h_sp)
    return dh_em, dh_sp, dqk_em, dqk_sp


# The fake (meta) kernels of the core's registered ops: their outputs' shapes and dtype, without
# computing them; each registered for the native op (native.py, outputs in h_em's dtype) and for
# the Triton one (triton.py, float32 whatever the inputs). Outputs are new contiguous tensors,
# whatever the strides of the inputs (autograd hands over non-contiguous gradients).
def ssa_core_fwd_fake(h_em, h_sp, qk_em, qk_sp, scale, dtype=None):
    """p_em, p_sp (B, d), alpha (B, 2T), lse (B,)."""
    B, T, d = h_em.shape
    dtype = dtype or h_em.dtype
    return (h_em.new_empty(B, d, dtype=dtype), h_em.new_empty(B, d, dtype=dtype),
            h_em.new_empty(B, 2 * T, dtype=dtype), h_em.new_empty(B, dtype=dtype))


def ssa_core_bwd_fake(h_em, h_sp, qk_em, qk_sp, alpha, p_em, p_sp, dp_em, dp_sp, dalpha, scale,
                      dtype=None):
    """dh_em, dh_sp (B, T, d), dqk_em, dqk_sp (B, d)."""
    B, T, d = h_em.shape
    dtype = dtype or h_em.dtype
    return (h_em.new_empty(B, T, d, dtype=dtype), h_em.new_empty(B, T, d, dtype=dtype),
            h_em.new_empty(B, d, dtype=dtype), h_em.new_empty(B, d, dtype=dtype))
