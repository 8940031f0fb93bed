"""Triton kernels of the SSA core (launchers only, no autograd).

Forward: one pass over the rows of h_em and h_sp with an online softmax (running max m, running
sum l, running weighted sums acc_em, acc_sp). A program owns one item and one slice of T; with
``splits > 1`` (small batches, to fill the GPU) the slices' partial states are merged afterwards:
M = max_s m_s, L = sum_s l_s e^(m_s - M), p = sum_s acc_s e^(m_s - M) / L, lse = M + ln L.
With one slice the program finalises p, lse and alpha itself.

Backward: one pass; D = p_em . dp_em + p_sp . dp_sp + alpha . dalpha (per item, precomputed),
ds_t = alpha_t (h_t . dp + dalpha_t - D), dh_t = alpha_t dp + scale ds_t qk,
dqk = scale sum_t ds_t h_t (partial sums per slice, added afterwards).
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from ..._backend import triton_interpret
from .._triton_common import (
    SSA_FUSED_MAX_REGISTERS,
    SSA_FUSED_MAX_SPINS,
    SSA_FUSED_WARPS,
    device_guard,
    sm_count,
    ssa_fused_launch,
    ssa_launch,
)
from .reference import ssa_core_bwd_fake, ssa_core_fwd_fake


@triton.jit
def _vector(ptr, b, d, offs_d, dmask):
    """Row b of a (B, d) tensor as float32."""
    return tl.load(ptr + b * d + offs_d, mask=dmask, other=0.0).to(tl.float32)


@triton.jit
def _rows_update(h_ptr, qk, offs_t, offs_d, t_end, d, scale, stride_t, alpha_ptr, alpha_off,
                 m, l, acc, acc_other, RESCALE_OTHER: tl.constexpr):
    tmask = offs_t < t_end
    h = tl.load(h_ptr + offs_t[:, None] * stride_t + offs_d[None, :],
                mask=tmask[:, None] & (offs_d[None, :] < d), other=0.0).to(tl.float32)
    s = tl.sum(h * qk[None, :], axis=1) * scale
    s = tl.where(tmask, s, float("-inf"))
    tl.store(alpha_ptr + alpha_off + offs_t, s, mask=tmask)
    m_new = tl.maximum(m, tl.max(s, axis=0))
    corr = tl.exp(m - m_new)
    p = tl.exp(s - m_new)
    l = l * corr + tl.sum(p, axis=0)
    acc = acc * corr + tl.sum(p[:, None] * h, axis=0)
    if RESCALE_OTHER:
        acc_other = acc_other * corr
    return m_new, l, acc, acc_other


@triton.jit
def _ssa_fwd_kernel(
    h_em_ptr, h_sp_ptr, qk_em_ptr, qk_sp_ptr,  # (B, T, d) x2, (B, d) x2
    alpha_ptr,  # (B, 2T): raw scores, normalised in place when SPLITS == 1
    p_em_ptr, p_sp_ptr, lse_ptr,  # finished outputs (SPLITS == 1)
    m_part_ptr, l_part_ptr, acc_em_part_ptr, acc_sp_part_ptr,  # (B, S), (B, S), (B, S, d) x2
    T, d, rows_per_split, scale,
    SPLITS: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    sidx = tl.program_id(1)
    offs_d = tl.arange(0, BLOCK_D)
    dmask = offs_d < d
    qk_em = _vector(qk_em_ptr, b, d, offs_d, dmask)
    qk_sp = _vector(qk_sp_ptr, b, d, offs_d, dmask)
    h_em = h_em_ptr + b * T * d
    h_sp = h_sp_ptr + b * T * d
    t_start = sidx * rows_per_split
    t_end = tl.minimum(t_start + rows_per_split, T)
    m = tl.full((), float("-inf"), tl.float32)
    l = tl.zeros((), tl.float32)
    acc_em = tl.zeros((BLOCK_D,), tl.float32)
    acc_sp = tl.zeros((BLOCK_D,), tl.float32)
    a_base = b * 2 * T
    for t0 in range(t_start, t_end, BLOCK_T):
        offs_t = t0 + tl.arange(0, BLOCK_T)
        m, l, acc_em, acc_sp = _rows_update(h_em, qk_em, offs_t, offs_d, t_end, d, scale, d,
                                            alpha_ptr, a_base, m, l, acc_em, acc_sp, True)
        m, l, acc_sp, acc_em = _rows_update(h_sp, qk_sp, offs_t, offs_d, t_end, d, scale, d,
                                            alpha_ptr, a_base + T, m, l, acc_sp, acc_em, True)
    if SPLITS == 1:
        inv = 1.0 / l
        tl.store(p_em_ptr + b * d + offs_d, acc_em * inv, mask=dmask)
        tl.store(p_sp_ptr + b * d + offs_d, acc_sp * inv, mask=dmask)
        lse = m + tl.log(l)
        tl.store(lse_ptr + b, lse)
        tl.debug_barrier()  # the raw scores written above are read back below
        for t0 in range(0, 2 * T, BLOCK_T):
            offs = t0 + tl.arange(0, BLOCK_T)
            amask = offs < 2 * T
            s = tl.load(alpha_ptr + a_base + offs, mask=amask, other=0.0)
            tl.store(alpha_ptr + a_base + offs, tl.exp(s - lse), mask=amask)
    else:
        part = b * SPLITS + sidx
        tl.store(m_part_ptr + part, m)
        tl.store(l_part_ptr + part, l)
        tl.store(acc_em_part_ptr + part * d + offs_d, acc_em, mask=dmask)
        tl.store(acc_sp_part_ptr + part * d + offs_d, acc_sp, mask=dmask)


@triton.jit
def _rows_backward(h_ptr, dh_ptr, qk, dp, alpha_ptr, dalpha_ptr, a_off, D, offs_t, offs_d, t_end,
                   d, scale, dqk):
    tmask = offs_t < t_end
    m2 = tmask[:, None] & (offs_d[None, :] < d)
    h = tl.load(h_ptr + offs_t[:, None] * d + offs_d[None, :], mask=m2, other=0.0).to(tl.float32)
    a = tl.load(alpha_ptr + a_off + offs_t, mask=tmask, other=0.0)
    da = tl.load(dalpha_ptr + a_off + offs_t, mask=tmask, other=0.0)
    ds = a * (tl.sum(h * dp[None, :], axis=1) + da - D)
    g = scale * ds
    dh = a[:, None] * dp[None, :] + g[:, None] * qk[None, :]
    tl.store(dh_ptr + offs_t[:, None] * d + offs_d[None, :], dh, mask=m2)
    return dqk + tl.sum(g[:, None] * h, axis=0)


@triton.jit
def _ssa_bwd_kernel(
    h_em_ptr, h_sp_ptr, qk_em_ptr, qk_sp_ptr, alpha_ptr, dalpha_ptr, dp_em_ptr, dp_sp_ptr, D_ptr,
    dh_em_ptr, dh_sp_ptr, dqk_em_part_ptr, dqk_sp_part_ptr,  # (B, T, d) x2, (B, S, d) x2
    T, d, rows_per_split, scale,
    SPLITS: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    sidx = tl.program_id(1)
    offs_d = tl.arange(0, BLOCK_D)
    dmask = offs_d < d
    qk_em = _vector(qk_em_ptr, b, d, offs_d, dmask)
    qk_sp = _vector(qk_sp_ptr, b, d, offs_d, dmask)
    dp_em = _vector(dp_em_ptr, b, d, offs_d, dmask)
    dp_sp = _vector(dp_sp_ptr, b, d, offs_d, dmask)
    D = tl.load(D_ptr + b)
    t_start = sidx * rows_per_split
    t_end = tl.minimum(t_start + rows_per_split, T)
    dqk_em = tl.zeros((BLOCK_D,), tl.float32)
    dqk_sp = tl.zeros((BLOCK_D,), tl.float32)
    base = b * T * d
    a_base = b * 2 * T
    for t0 in range(t_start, t_end, BLOCK_T):
        offs_t = t0 + tl.arange(0, BLOCK_T)
        dqk_em = _rows_backward(h_em_ptr + base, dh_em_ptr + base, qk_em, dp_em, alpha_ptr,
                                dalpha_ptr, a_base, D, offs_t, offs_d, t_end, d, scale, dqk_em)
        dqk_sp = _rows_backward(h_sp_ptr + base, dh_sp_ptr + base, qk_sp, dp_sp, alpha_ptr,
                                dalpha_ptr, a_base + T, D, offs_t, offs_d, t_end, d, scale,
                                dqk_sp)
    part = b * SPLITS + sidx
    tl.store(dqk_em_part_ptr + part * d + offs_d, dqk_em, mask=dmask)
    tl.store(dqk_sp_part_ptr + part * d + offs_d, dqk_sp, mask=dmask)


def _launch(h: torch.Tensor, splits: int | None, block_t: int | None):
    B, T, d = h.shape
    return ssa_launch(B, T, d, sm_count=sm_count(h), interpret=triton_interpret(), splits=splits,
                      block_t=block_t)


def ssa_core_fwd_triton(h_em, h_sp, qk_em, qk_sp, scale: float, *, splits: int | None = None,
                        block_t: int | None = None):
    """(B, T, d) x2, (B, d) x2 float32 -> p_em, p_sp (B, d), alpha (B, 2T), lse (B,), float32."""
    h_em, h_sp = h_em.contiguous(), h_sp.contiguous()
    qk_em, qk_sp = qk_em.contiguous(), qk_sp.contiguous()
    B, T, d = h_em.shape
    S, rows, block_t, block_d, num_warps = _launch(h_em, splits, block_t)
    f32 = dict(device=h_em.device, dtype=torch.float32)
    alpha = torch.empty(B, 2 * T, **f32)
    p_em = torch.empty(B, d, **f32)
    p_sp = torch.empty(B, d, **f32)
    lse = torch.empty(B, **f32)
    if S == 1:
        m_part = l_part = acc_em = acc_sp = lse  # unused by the kernel
    else:
        m_part = torch.empty(B, S, **f32)
        l_part = torch.empty(B, S, **f32)
        acc_em = torch.empty(B, S, d, **f32)
        acc_sp = torch.empty(B, S, d, **f32)
    with device_guard(h_em):
        _ssa_fwd_kernel[(B, S)](
            h_em, h_sp, qk_em, qk_sp, alpha, p_em, p_sp, lse, m_part, l_part, acc_em, acc_sp,
            T, d, rows, float(scale), SPLITS=S, BLOCK_T=block_t, BLOCK_D=block_d,
            num_warps=num_warps)
    if S > 1:
        M = m_part.amax(dim=1, keepdim=True)
        w = torch.exp(m_part - M)  # (B, S)
        L = (l_part * w).sum(dim=1)
        p_em = (acc_em * w[..., None]).sum(dim=1) / L[:, None]
        p_sp = (acc_sp * w[..., None]).sum(dim=1) / L[:, None]
        lse = M[:, 0] + torch.log(L)
        alpha = torch.exp(alpha - lse[:, None])
    return p_em, p_sp, alpha, lse


def ssa_core_bwd_triton(h_em, h_sp, qk_em, qk_sp, alpha, p_em, p_sp, dp_em, dp_sp, dalpha,
                        scale: float, *, splits: int | None = None, block_t: int | None = None):
    """Gradients of the core (float32 in, float32 out); any strides (autograd hands over
    non-contiguous gradients), outputs contiguous."""
    f32 = dict(device=h_em.device, dtype=torch.float32)
    h_em, h_sp, qk_em, qk_sp, alpha, p_em, p_sp, dp_em, dp_sp, dalpha = (
        t.to(torch.float32).contiguous()
        for t in (h_em, h_sp, qk_em, qk_sp, alpha, p_em, p_sp, dp_em, dp_sp, dalpha))
    B, T, d = h_em.shape
    S, rows, block_t, block_d, num_warps = _launch(h_em, splits, block_t)
    D = (p_em * dp_em).sum(-1) + (p_sp * dp_sp).sum(-1) + (alpha * dalpha).sum(-1)
    dh_em = torch.empty(B, T, d, **f32)
    dh_sp = torch.empty(B, T, d, **f32)
    dqk_em = torch.empty(B, S, d, **f32)
    dqk_sp = torch.empty(B, S, d, **f32)
    with device_guard(h_em):
        _ssa_bwd_kernel[(B, S)](
            h_em, h_sp, qk_em, qk_sp, alpha, dalpha, dp_em, dp_sp, D.contiguous(),
            dh_em, dh_sp, dqk_em, dqk_sp, T, d, rows, float(scale),
            SPLITS=S, BLOCK_T=block_t, BLOCK_D=block_d, num_warps=num_warps)
    return dh_em, dh_sp, dqk_em.sum(dim=1), dqk_sp.sum(dim=1)


# Registered ops, so that torch.compile treats the launchers as opaque nodes with known shapes;
# their fake kernels are the native ops' (reference.py), with float32 outputs.
@torch.library.custom_op("ssa_fast::ssa_core_fwd_triton", mutates_args=())
def ssa_core_fwd_triton_op(h_em: torch.Tensor, h_sp: torch.Tensor, qk_em: torch.Tensor,
                           qk_sp: torch.Tensor, scale: float
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return ssa_core_fwd_triton(h_em, h_sp, qk_em, qk_sp, scale)


ssa_core_fwd_triton_op.register_fake(functools.partial(ssa_core_fwd_fake, dtype=torch.float32))


@torch.library.custom_op("ssa_fast::ssa_core_bwd_triton", mutates_args=())
def ssa_core_bwd_triton_op(h_em: torch.Tensor, h_sp: torch.Tensor, qk_em: torch.Tensor,
                           qk_sp: torch.Tensor, alpha: torch.Tensor, p_em: torch.Tensor,
                           p_sp: torch.Tensor, dp_em: torch.Tensor, dp_sp: torch.Tensor,
                           dalpha: torch.Tensor, scale: float
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return ssa_core_bwd_triton(h_em, h_sp, qk_em, qk_sp, alpha, p_em, p_sp, dp_em, dp_sp, dalpha,
                               scale)


ssa_core_bwd_triton_op.register_fake(functools.partial(ssa_core_bwd_fake, dtype=torch.float32))


# -- the whole op in one kernel per direction (design.md section 10) ---------------------------
#
# For batches that fit in one wave of programs (``ssa_fused_launch``), where the op is bound by
# launches, not bytes: the forward computes q, qk = W_k q, the online-softmax pass, p and c = p W_v
# of one item per program; the backward computes dp = W_v dc, D, the pass over h_sp (dh_sp, dqk_sp),
# the pass over h_em (dqk_em), dq = dqk W_k and a second pass over h_em (dh_em with the w_q dq
# term, the item's share of dw_q), and the weight gradients in the same launch: programs whose
# ticket is past the items reduce over the batch (dW_v at once; dW_k and dw_q once every item has
# published its dqk and dw_q row). Tickets come from an atomic counter, not from the program id,
# so a program waits only for programs that hold earlier tickets and are therefore running: no
# assumption about the order the hardware starts programs in.


@triton.jit
def _matvec_rows(w_ptr, x_ptr, offs_d, dmask, d, BLOCK_D: tl.constexpr, BLOCK_J: tl.constexpr):
    """y[i] = sum_j W[i, j] x[j] for a (d, d) row-major W and x in memory (read in chunks)."""
    y = tl.zeros((BLOCK_D,), tl.float32)
    for j0 in range(0, d, BLOCK_J):
        offs_j = j0 + tl.arange(0, BLOCK_J)
        jmask = offs_j < d
        x = tl.load(x_ptr + offs_j, mask=jmask, other=0.0).to(tl.float32)
        w = tl.load(w_ptr + offs_d[:, None] * d + offs_j[None, :],
                    mask=dmask[:, None] & jmask[None, :], other=0.0).to(tl.float32)
        y += tl.sum(w * x[None, :], axis=1)
    return y


@triton.jit
def _matvec_cols(w_ptr, x_ptr, x_stride, offs_d, dmask, d, BLOCK_D: tl.constexpr,
                 BLOCK_J: tl.constexpr):
    """y[j] = sum_i x[i] W[i, j] for a (d, d) row-major W and x in memory (read in chunks)."""
    y = tl.zeros((BLOCK_D,), tl.float32)
    for i0 in range(0, d, BLOCK_J):
        offs_i = i0 + tl.arange(0, BLOCK_J)
        imask = offs_i < d
        x = tl.load(x_ptr + offs_i * x_stride, mask=imask, other=0.0).to(tl.float32)
        w = tl.load(w_ptr + offs_i[:, None] * d + offs_d[None, :],
                    mask=imask[:, None] & dmask[None, :], other=0.0).to(tl.float32)
        y += tl.sum(x[:, None] * w, axis=0)
    return y


@triton.jit
def _ssa_fused_fwd_kernel(
    h_em_ptr, h_sp_ptr, w_q_ptr, w_k_em_ptr, w_k_sp_ptr, w_v_em_ptr, w_v_sp_ptr,
    c_ptr,  # (B, 2d) concat or (B, d) sum, float32
    alpha_ptr,  # (B, 2T) float32: raw scores, normalised in place
    saved_ptr,  # (5, B, d) float32: q, qk_em, qk_sp, p_em, p_sp (for the backward)
    B, T, d, scale,
    COMBINE_SUM: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_J: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    dmask = offs_d < d
    h_em = h_em_ptr + b * T * d
    h_sp = h_sp_ptr + b * T * d
    bd = B * d
    q_out = saved_ptr + b * d
    # q = sum_t w_q[t] h_em[t]
    q = tl.zeros((BLOCK_D,), tl.float32)
    for t0 in range(0, T, BLOCK_T):
        offs_t = t0 + tl.arange(0, BLOCK_T)
        tmask = offs_t < T
        h = tl.load(h_em + offs_t[:, None] * d + offs_d[None, :],
                    mask=tmask[:, None] & dmask[None, :], other=0.0).to(tl.float32)
        w = tl.load(w_q_ptr + offs_t, mask=tmask, other=0.0).to(tl.float32)
        q += tl.sum(w[:, None] * h, axis=0)
    tl.store(q_out + offs_d, q, mask=dmask)
    tl.debug_barrier()  # q is read back in chunks by every thread
    # qk = q W_k^T, i.e. qk[i] = sum_j W_k[i, j] q[j]
    qk_em = _matvec_rows(w_k_em_ptr, q_out, offs_d, dmask, d, BLOCK_D, BLOCK_J)
    qk_sp = _matvec_rows(w_k_sp_ptr, q_out, offs_d, dmask, d, BLOCK_D, BLOCK_J)
    tl.store(saved_ptr + bd + b * d + offs_d, qk_em, mask=dmask)
    tl.store(saved_ptr + 2 * bd + b * d + offs_d, qk_sp, mask=dmask)
    m = tl.full((), float("-inf"), tl.float32)
    l = tl.zeros((), tl.float32)
    acc_em = tl.zeros((BLOCK_D,), tl.float32)
    acc_sp = tl.zeros((BLOCK_D,), tl.float32)
    a_base = b * 2 * T
    for t0 in range(0, T, BLOCK_T):
        offs_t = t0 + tl.arange(0, BLOCK_T)
        m, l, acc_em, acc_sp = _rows_update(h_em, qk_em, offs_t, offs_d, T, d, scale, d,
                                            alpha_ptr, a_base, m, l, acc_em, acc_sp, True)
        m, l, acc_sp, acc_em = _rows_update(h_sp, qk_sp, offs_t, offs_d, T, d, scale, d,
                                            alpha_ptr, a_base + T, m, l, acc_sp, acc_em, True)
    inv = 1.0 / l
    p_em_out = saved_ptr + 3 * bd + b * d
    p_sp_out = saved_ptr + 4 * bd + b * d
    tl.store(p_em_out + offs_d, acc_em * inv, mask=dmask)
    tl.store(p_sp_out + offs_d, acc_sp * inv, mask=dmask)
    lse = m + tl.log(l)
    tl.debug_barrier()  # p and the raw scores are read back below
    # c = p W_v, i.e. c[j] = sum_i p[i] W_v[i, j]
    c_em = _matvec_cols(w_v_em_ptr, p_em_out, 1, offs_d, dmask, d, BLOCK_D, BLOCK_J)
    c_sp = _matvec_cols(w_v_sp_ptr, p_sp_out, 1, offs_d, dmask, d, BLOCK_D, BLOCK_J)
    if COMBINE_SUM:
        tl.store(c_ptr + b * d + offs_d, c_em + c_sp, mask=dmask)
    else:
        tl.store(c_ptr + b * 2 * d + offs_d, c_em, mask=dmask)
        tl.store(c_ptr + b * 2 * d + d + offs_d, c_sp, mask=dmask)
    for t0 in range(0, 2 * T, BLOCK_T):
        offs = t0 + tl.arange(0, BLOCK_T)
        amask = offs < 2 * T
        s = tl.load(alpha_ptr + a_base + offs, mask=amask, other=0.0)
        tl.store(alpha_ptr + a_base + offs, tl.exp(s - lse), mask=amask)


@triton.jit
def _dalpha(dalpha_ptr, offs, mask, DALPHA: tl.constexpr):
    """Elements offs of the flattened (B, 2T) output gradient of alpha, as float32."""
    if DALPHA == 1:
        da = tl.load(dalpha_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    elif DALPHA == 2:
        da = tl.where(mask, tl.load(dalpha_ptr).to(tl.float32), 0.0)
    else:
        da = tl.zeros(offs.shape, tl.float32)
    return da


@triton.jit
def _fused_rows_backward(h_ptr, dh_ptr, qk, dp, dq, w_q_ptr, alpha_ptr, dalpha_ptr, a_off,
                         D, offs_t, offs_d, T, d, scale, dqk, dwq_ptr, DALPHA: tl.constexpr,
                         MODE: tl.constexpr):
    """One tile of rows. MODE 0 (h_sp): write dh, return dqk + this tile's share; MODE 1 (h_em,
    first pass): return dqk + share; MODE 2 (h_em, second pass): write dh with w_q[t] dq added
    and this item's dw_q row (h_t . dq)."""
    tmask = offs_t < T
    m2 = tmask[:, None] & (offs_d[None, :] < d)
    h = tl.load(h_ptr + offs_t[:, None] * d + offs_d[None, :], mask=m2, other=0.0).to(tl.float32)
    a = tl.load(alpha_ptr + a_off + offs_t, mask=tmask, other=0.0)
    da = _dalpha(dalpha_ptr, a_off + offs_t, tmask, DALPHA)
    ds = a * (tl.sum(h * dp[None, :], axis=1) + da - D)
    g = scale * ds
    if MODE != 1:
        dh = a[:, None] * dp[None, :] + g[:, None] * qk[None, :]
        if MODE == 2:
            wq = tl.load(w_q_ptr + offs_t, mask=tmask, other=0.0).to(tl.float32)
            dh += wq[:, None] * dq[None, :]
            tl.store(dwq_ptr + offs_t, tl.sum(h * dq[None, :], axis=1), mask=tmask)
        tl.store(dh_ptr + offs_t[:, None] * d + offs_d[None, :], dh, mask=m2)
    if MODE != 2:
        dqk += tl.sum(g[:, None] * h, axis=0)
    return dqk


@triton.jit
def _outer_sum(u_ptr, u_stride, v_ptr, v_stride, out_ptr, i0, B, d, poison,
               BLOCK_I: tl.constexpr, BLOCK_D: tl.constexpr):
    """out[i, :] = sum_b u[b, i] v[b, :] + poison for rows i in [i0, i0 + BLOCK_I) of a (d, d)
    result, one rank-1 update per item in item order (deterministic; no shared memory, unlike a
    tl.dot)."""
    offs_i = i0 + tl.arange(0, BLOCK_I)
    offs_d = tl.arange(0, BLOCK_D)
    imask = offs_i < d
    dmask = offs_d < d
    acc = tl.zeros((BLOCK_I, BLOCK_D), tl.float32)
    for b in range(0, B):
        u = tl.load(u_ptr + b * u_stride + offs_i, mask=imask, other=0.0,
                    cache_modifier=".cg").to(tl.float32)
        v = tl.load(v_ptr + b * v_stride + offs_d, mask=dmask, other=0.0,
                    cache_modifier=".cg").to(tl.float32)
        acc += u[:, None] * v[None, :]
    acc += poison
    tl.store(out_ptr + offs_i[:, None] * d + offs_d[None, :], acc,
             mask=imask[:, None] & dmask[None, :])


@triton.jit
def _ssa_fused_bwd_kernel(
    h_em_ptr, h_sp_ptr, w_q_ptr, w_k_em_ptr, w_k_sp_ptr, w_v_em_ptr, w_v_sp_ptr,
    saved_ptr,  # (5, B, d): q, qk_em, qk_sp, p_em, p_sp
    alpha_ptr,  # (B, 2T) float32
    dc_ptr, dc_stride, dc_sp_offset,  # dc_em[b] at dc + b * stride, dc_sp at + dc_sp_offset
    dalpha_ptr,  # (B, 2T) contiguous (DALPHA 1) or one value broadcast (DALPHA 2), or unused (0)
    dh_em_ptr, dh_sp_ptr, dw_q_ptr, dw_ptr,  # (B, T, d) x2, (T,), (4, d, d): v_em, v_sp, k_em, k_sp
    dqk_ptr,  # workspace (2, B, d): dqk_em, dqk_sp
    dwq_part_ptr,  # workspace (B, T): h_em[b, t] . dq[b]
    counters_ptr,  # int32 (2,), zero at launch: [tickets taken, items published]
    B, T, d, scale,
    DALPHA: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_J: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_TQ: tl.constexpr,
    MAX_SPINS: tl.constexpr,
):
    ticket = tl.atomic_add(counters_ptr, 1)
    bd = B * d
    if ticket < B:
        b = ticket.to(tl.int64)
        offs_d = tl.arange(0, BLOCK_D)
        dmask = offs_d < d
        qk_em = tl.load(saved_ptr + bd + b * d + offs_d, mask=dmask, other=0.0)
        qk_sp = tl.load(saved_ptr + 2 * bd + b * d + offs_d, mask=dmask, other=0.0)
        # dp = dc W_v^T, i.e. dp[i] = sum_j W_v[i, j] dc[j]
        dc_em = dc_ptr + b * dc_stride
        dp_em = _matvec_rows(w_v_em_ptr, dc_em, offs_d, dmask, d, BLOCK_D, BLOCK_J)
        dp_sp = _matvec_rows(w_v_sp_ptr, dc_em + dc_sp_offset, offs_d, dmask, d, BLOCK_D,
                             BLOCK_J)
        p_em = tl.load(saved_ptr + 3 * bd + b * d + offs_d, mask=dmask, other=0.0)
        p_sp = tl.load(saved_ptr + 4 * bd + b * d + offs_d, mask=dmask, other=0.0)
        D = tl.sum(p_em * dp_em, axis=0) + tl.sum(p_sp * dp_sp, axis=0)
        a_base = b * 2 * T
        if DALPHA != 0:
            for t0 in range(0, 2 * T, BLOCK_T):
                offs = t0 + tl.arange(0, BLOCK_T)
                amask = offs < 2 * T
                a = tl.load(alpha_ptr + a_base + offs, mask=amask, other=0.0)
                da = _dalpha(dalpha_ptr, a_base + offs, amask, DALPHA)
                D += tl.sum(a * da, axis=0)
        base = b * T * d
        dqk_em = tl.zeros((BLOCK_D,), tl.float32)
        dqk_sp = tl.zeros((BLOCK_D,), tl.float32)
        for t0 in range(0, T, BLOCK_T):
            offs_t = t0 + tl.arange(0, BLOCK_T)
            dqk_sp = _fused_rows_backward(h_sp_ptr + base, dh_sp_ptr + base, qk_sp, dp_sp, dp_sp,
                                          w_q_ptr, alpha_ptr, dalpha_ptr, a_base + T,
                                          D, offs_t, offs_d, T, d, scale, dqk_sp, dwq_part_ptr,
                                          DALPHA, 0)
            dqk_em = _fused_rows_backward(h_em_ptr + base, dh_em_ptr + base, qk_em, dp_em, dp_em,
                                          w_q_ptr, alpha_ptr, dalpha_ptr, a_base, D, offs_t,
                                          offs_d, T, d, scale, dqk_em, dwq_part_ptr, DALPHA, 1)
        dqk_em_out = dqk_ptr + b * d
        dqk_sp_out = dqk_ptr + bd + b * d
        tl.store(dqk_em_out + offs_d, dqk_em, mask=dmask)
        tl.store(dqk_sp_out + offs_d, dqk_sp, mask=dmask)
        tl.debug_barrier()  # dqk is read back in chunks below
        # dq = dqk_em W_k_em + dqk_sp W_k_sp, i.e. dq[j] = sum_i dqk[i] W_k[i, j]
        dq = _matvec_cols(w_k_em_ptr, dqk_em_out, 1, offs_d, dmask, d, BLOCK_D, BLOCK_J)
        dq += _matvec_cols(w_k_sp_ptr, dqk_sp_out, 1, offs_d, dmask, d, BLOCK_D, BLOCK_J)
        for t0 in range(0, T, BLOCK_T):
            offs_t = t0 + tl.arange(0, BLOCK_T)
            _fused_rows_backward(h_em_ptr + base, dh_em_ptr + base, qk_em, dp_em, dq, w_q_ptr,
                                 alpha_ptr, dalpha_ptr, a_base, D, offs_t, offs_d, T, d, scale,
                                 dqk_em, dwq_part_ptr + b * T, DALPHA, 2)
        tl.debug_barrier()  # every thread's stores before the release below
        tl.atomic_add(counters_ptr + 1, 1, sem="release")
    else:
        # weight programs: tickets B .. B + 4 n - 1 the row chunks of dW_v_em, dW_v_sp, dW_k_em,
        # dW_k_sp (n chunks each), then the chunks of dw_q
        n = tl.cdiv(d, BLOCK_I)
        w = ticket - B
        mat = w // n
        i0 = (w % n) * BLOCK_I
        # A wait that never ends (impossible unless the kernel is broken) gives up after
        # MAX_SPINS polls and poisons its outputs with NaN: loudly wrong, never a hung GPU.
        poison = tl.zeros((), tl.float32)
        if mat >= 2:
            spins = tl.zeros((), tl.int32)
            while (tl.atomic_add(counters_ptr + 1, 0, sem="acquire") < B) & (spins < MAX_SPINS):
                spins += 1
            poison = tl.where(spins < MAX_SPINS, 0.0, float("nan"))
            tl.debug_barrier()
        if mat == 0:
            _outer_sum(saved_ptr + 3 * bd, d, dc_ptr, dc_stride, dw_ptr, i0, B, d, poison,
                       BLOCK_I, BLOCK_D)
        elif mat == 1:
            _outer_sum(saved_ptr + 4 * bd, d, dc_ptr + dc_sp_offset, dc_stride,
                       dw_ptr + d * d, i0, B, d, poison, BLOCK_I, BLOCK_D)
        elif mat == 2:
            _outer_sum(dqk_ptr, d, saved_ptr, d, dw_ptr + 2 * d * d, i0, B, d, poison,
                       BLOCK_I, BLOCK_D)
        elif mat == 3:
            _outer_sum(dqk_ptr + bd, d, saved_ptr, d, dw_ptr + 3 * d * d, i0, B, d, poison,
                       BLOCK_I, BLOCK_D)
        else:
            offs_t = (w - 4 * n) * BLOCK_TQ + tl.arange(0, BLOCK_TQ)
            tmask = offs_t < T
            acc = tl.zeros((BLOCK_TQ,), tl.float32)
            for b0 in range(0, B):
                acc += tl.load(dwq_part_ptr + b0 * T + offs_t, mask=tmask, other=0.0,
                               cache_modifier=".cg")
            tl.store(dw_q_ptr + offs_t, acc + poison, mask=tmask)


def fused_launch(h: torch.Tensor):
    """The one-kernel-per-direction geometry for h's shape on h's device, or None where the
    two-kernel path runs (``_triton_common.ssa_fused_launch``)."""
    B, T, d = h.shape
    return ssa_fused_launch(B, T, d, sm_count=sm_count(h), interpret=triton_interpret())


def ssa_fused_fwd_triton(h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp, scale: float,
                         combine_sum: bool):
    """The whole forward in one launch: (h_em, h_sp (B, T, d) float32 or bfloat16 / float16,
    weights float32) -> c (B, 2d) or (B, d), alpha (B, 2T), saved (5, B, d) = q, qk_em, qk_sp,
    p_em, p_sp; all float32."""
    h_em, h_sp = h_em.contiguous(), h_sp.contiguous()
    w_q, w_k_em, w_k_sp, w_v_em, w_v_sp = (
        t.contiguous() for t in (w_q, w_k_em, w_k_sp, w_v_em, w_v_sp))
    B, T, d = h_em.shape
    g = fused_launch(h_em) or ssa_fused_launch(B, T, d, sm_count=B)
    f32 = dict(device=h_em.device, dtype=torch.float32)
    c = torch.empty(B, d if combine_sum else 2 * d, **f32)
    alpha = torch.empty(B, 2 * T, **f32)
    saved = torch.empty(5, B, d, **f32)
    with device_guard(h_em):
        _ssa_fused_fwd_kernel[(B,)](
            h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp, c, alpha, saved, B, T, d,
            float(scale), COMBINE_SUM=combine_sum, BLOCK_T=g.block_t, BLOCK_D=g.block_d,
            BLOCK_J=g.block_j, num_warps=SSA_FUSED_WARPS,
            maxnreg=SSA_FUSED_MAX_REGISTERS)
    return c, alpha, saved


def ssa_fused_bwd_triton(h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp, saved, alpha, dc,
                         dalpha, scale: float, combine_sum: bool):
    """Every gradient in one launch: dh_em, dh_sp (in the dtypes of h_em, h_sp), dw_q (T,) and
    dW (4, d, d) = dW_v_em, dW_v_sp, dW_k_em, dW_k_sp, float32. ``dc`` (B, 2d) or (B, d) and
    ``dalpha`` (B, 2T) or None with any strides (copied unless dc's columns are contiguous, unless
    dalpha is contiguous or one value broadcast, as ``alpha.sum()`` hands over)."""
    h_em, h_sp = h_em.contiguous(), h_sp.contiguous()
    w_q, w_k_em, w_k_sp, w_v_em, w_v_sp = (
        t.contiguous() for t in (w_q, w_k_em, w_k_sp, w_v_em, w_v_sp))
    B, T, d = h_em.shape
    g = fused_launch(h_em) or ssa_fused_launch(B, T, d, sm_count=B)
    if dc.stride(-1) != 1:
        dc = dc.contiguous()
    if dalpha is None:
        dalpha_mode, dalpha = 0, alpha  # (not read)
    elif dalpha.stride() == (0, 0):  # one value broadcast (alpha.sum()'s gradient): read once
        dalpha_mode = 2
    else:
        dalpha_mode, dalpha = 1, dalpha.contiguous()
    f32 = dict(device=h_em.device, dtype=torch.float32)
    dh_em = torch.empty(B, T, d, device=h_em.device, dtype=h_em.dtype)
    dh_sp = torch.empty(B, T, d, device=h_sp.device, dtype=h_sp.dtype)
    dw_q = torch.empty(T, **f32)
    dw = torch.empty(4, d, d, **f32)
    dqk = torch.empty(2, B, d, **f32)
    dwq_part = torch.empty(B, T, **f32)
    counters = torch.zeros(2, device=h_em.device, dtype=torch.int32)
    with device_guard(h_em):
        _ssa_fused_bwd_kernel[(g.programs_bwd,)](
            h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp, saved, alpha,
            dc, dc.stride(0), 0 if combine_sum else d,
            dalpha,
            dh_em, dh_sp, dw_q, dw, dqk, dwq_part, counters, B, T, d, float(scale),
            DALPHA=dalpha_mode, BLOCK_T=g.block_t, BLOCK_D=g.block_d, BLOCK_J=g.block_j,
            BLOCK_I=g.block_i, BLOCK_TQ=g.block_tq,
            MAX_SPINS=SSA_FUSED_MAX_SPINS, num_warps=SSA_FUSED_WARPS,
            maxnreg=SSA_FUSED_MAX_REGISTERS)
    return dh_em, dh_sp, dw_q, dw


@torch.library.custom_op("ssa_fast::ssa_fused_fwd_triton", mutates_args=())
def ssa_fused_fwd_triton_op(h_em: torch.Tensor, h_sp: torch.Tensor, w_q: torch.Tensor,
                            w_k_em: torch.Tensor, w_k_sp: torch.Tensor, w_v_em: torch.Tensor,
                            w_v_sp: torch.Tensor, scale: float, combine_sum: bool
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return ssa_fused_fwd_triton(h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp, scale,
                                combine_sum)


@ssa_fused_fwd_triton_op.register_fake
def _(h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp, scale, combine_sum):
    B, T, d = h_em.shape
    f32 = dict(dtype=torch.float32, device=h_em.device)
    return (torch.empty(B, d if combine_sum else 2 * d, **f32), torch.empty(B, 2 * T, **f32),
            torch.empty(5, B, d, **f32))


@torch.library.custom_op("ssa_fast::ssa_fused_bwd_triton", mutates_args=())
def ssa_fused_bwd_triton_op(h_em: torch.Tensor, h_sp: torch.Tensor, w_q: torch.Tensor,
                            w_k_em: torch.Tensor, w_k_sp: torch.Tensor, w_v_em: torch.Tensor,
                            w_v_sp: torch.Tensor, saved: torch.Tensor, alpha: torch.Tensor,
                            dc: torch.Tensor, dalpha: torch.Tensor | None, scale: float,
                            combine_sum: bool
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return ssa_fused_bwd_triton(h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp, saved, alpha,
                                dc, dalpha, scale, combine_sum)


@ssa_fused_bwd_triton_op.register_fake
def _(h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp, saved, alpha, dc, dalpha, scale,
      combine_sum):
    B, T, d = h_em.shape
    f32 = dict(dtype=torch.float32, device=h_em.device)
    return (torch.empty(B, T, d, dtype=h_em.dtype, device=h_em.device),
            torch.empty(B, T, d, dtype=h_sp.dtype, device=h_sp.device), torch.empty(T, **f32),
            torch.empty(4, d, d, **f32))
