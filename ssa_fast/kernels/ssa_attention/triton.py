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

import torch
import triton
import triton.language as tl

from ..._backend import triton_interpret
from .._triton_common import NUM_WARPS, device_guard, sm_count, ssa_launch


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
    S, rows, block_t, block_d = _launch(h_em, splits, block_t)
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
            num_warps=NUM_WARPS)
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
    S, rows, block_t, block_d = _launch(h_em, splits, block_t)
    D = (p_em * dp_em).sum(-1) + (p_sp * dp_sp).sum(-1) + (alpha * dalpha).sum(-1)
    dh_em = torch.empty(B, T, d, **f32)
    dh_sp = torch.empty(B, T, d, **f32)
    dqk_em = torch.empty(B, S, d, **f32)
    dqk_sp = torch.empty(B, S, d, **f32)
    with device_guard(h_em):
        _ssa_bwd_kernel[(B, S)](
            h_em, h_sp, qk_em, qk_sp, alpha, dalpha, dp_em, dp_sp, D.contiguous(),
            dh_em, dh_sp, dqk_em, dqk_sp, T, d, rows, float(scale),
            SPLITS=S, BLOCK_T=block_t, BLOCK_D=block_d, num_warps=NUM_WARPS)
    return dh_em, dh_sp, dqk_em.sum(dim=1), dqk_sp.sum(dim=1)


# Registered ops, so that torch.compile treats the launchers as opaque nodes with known shapes.
@torch.library.custom_op("ssa_fast::ssa_core_fwd_triton", mutates_args=())
def ssa_core_fwd_triton_op(h_em: torch.Tensor, h_sp: torch.Tensor, qk_em: torch.Tensor,
                           qk_sp: torch.Tensor, scale: float
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return ssa_core_fwd_triton(h_em, h_sp, qk_em, qk_sp, scale)


@ssa_core_fwd_triton_op.register_fake
def _(h_em, h_sp, qk_em, qk_sp, scale):
    B, T, d = h_em.shape
    f32 = dict(dtype=torch.float32, device=h_em.device)
    return (torch.empty(B, d, **f32), torch.empty(B, d, **f32), torch.empty(B, 2 * T, **f32),
            torch.empty(B, **f32))


@torch.library.custom_op("ssa_fast::ssa_core_bwd_triton", mutates_args=())
def ssa_core_bwd_triton_op(h_em: torch.Tensor, h_sp: torch.Tensor, qk_em: torch.Tensor,
                           qk_sp: torch.Tensor, alpha: torch.Tensor, p_em: torch.Tensor,
                           p_sp: torch.Tensor, dp_em: torch.Tensor, dp_sp: torch.Tensor,
                           dalpha: torch.Tensor, scale: float
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return ssa_core_bwd_triton(h_em, h_sp, qk_em, qk_sp, alpha, p_em, p_sp, dp_em, dp_sp, dalpha,
                               scale)


@ssa_core_bwd_triton_op.register_fake
def _(h_em, h_sp, qk_em, qk_sp, alpha, p_em, p_sp, dp_em, dp_sp, dalpha, scale):
    B, T, d = h_em.shape
    f32 = dict(dtype=torch.float32, device=h_em.device)
    return (torch.empty(B, T, d, **f32), torch.empty(B, T, d, **f32), torch.empty(B, d, **f32),
            torch.empty(B, d, **f32))
