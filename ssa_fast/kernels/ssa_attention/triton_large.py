"""The large-batch path of the triton backend's SSA (design.md section 10.2, "Large batch").

At B = 4096 the op is bound by the bytes it moves, and the two-kernel path (``triton.py``'s core
kernels with q and the w_q terms in torch) moves 10 B T d floats. Here 8 at most, 7 when L2
serves the forward's re-read of h_em:

- *forward*, one program per item (``_ssa_large_fwd_kernel``): q = h_em^T w_q (first read of
  h_em), qk = W_k q for both keys (the weights from L2), then the online-softmax pass over
  h_em (the second read, right after the first in the same program: 150 KB per item at T = 150,
  d = 256, so L2 still holds it) and h_sp; writes alpha and (q, qk_em, qk_sp, p_em, p_sp).
  c = p W_v is one cuBLAS product per key in torch.
- *backward*: dp = dc W_v^T and dW_v = p^T dc in torch (cuBLAS); K1 (``_ssa_large_bwd_rows_kernel``,
  one program per item) reads h_em and h_sp, writes dh_sp, dqk and the scores' gradients of the
  h_em rows (g = scale ds, (B, T)); dq = dqk W_k and dW_k = dqk^T q in torch; K2
  (``_ssa_large_bwd_em_kernel``, one program per item and tile of rows) reads h_em, writes dh_em
  with its w_q dq term and the rows h_em[b, t] . dq[b] whose sum over the batch is dw_q.

h is read in its own dtype (float32 or a half type) as float32, gradients of h are stored in h's
dtype; weights are float32; everything else float32. The path runs only when asked for
(``SSA_FAST_SSA_LARGE=1``, function.py) until a GPU session has measured and checked it.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..._backend import triton_interpret
from .._triton_common import NUM_WARPS, device_guard, ssa_large_launch
from .function import refuse_double_backward
from .reference import combine_outputs
from .triton import _dalpha, _rows_update


def large_launch(h: torch.Tensor):
    B, T, d = h.shape
    return ssa_large_launch(T, d, interpret=triton_interpret())


@triton.jit
def _qk_staged(w_em_ptr, w_sp_ptr, x_ptr, offs_d, dmask, d, BLOCK_D: tl.constexpr,
               BLOCK_J: tl.constexpr, NUM_STAGES: tl.constexpr):
    """y_x[i] = sum_j W_x[i, j] x[j] for both (d, d) row-major keys, x in memory: column chunks
    of both matrices per step, the next chunks in flight (NUM_STAGES) while these are reduced.
    The program's one resident copy per SM streams nothing else meanwhile, so these 2 d^2 reads
    from L2 must go at L2's bandwidth, not at its latency."""
    y_em = tl.zeros((BLOCK_D,), tl.float32)
    y_sp = tl.zeros((BLOCK_D,), tl.float32)
    for j0 in tl.range(0, d, BLOCK_J, num_stages=NUM_STAGES):
        offs_j = j0 + tl.arange(0, BLOCK_J)
        jmask = offs_j < d
        x = tl.load(x_ptr + offs_j, mask=jmask, other=0.0)
        idx = offs_d[:, None] * d + offs_j[None, :]
        m2 = dmask[:, None] & jmask[None, :]
        w = tl.load(w_em_ptr + idx, mask=m2, other=0.0)
        y_em += tl.sum(w * x[None, :], axis=1)
        w = tl.load(w_sp_ptr + idx, mask=m2, other=0.0)
        y_sp += tl.sum(w * x[None, :], axis=1)
    return y_em, y_sp


@triton.jit
def _ssa_large_fwd_kernel(
    h_em_ptr, h_sp_ptr, w_q_ptr, w_k_em_ptr, w_k_sp_ptr,  # (B, T, d) x2, (T,), (d, d) x2
    alpha_ptr,  # (B, 2T) float32: raw scores, normalised in place
    saved_ptr,  # (5, B, d) float32: q, qk_em, qk_sp, p_em, p_sp
    B, T, d, scale,
    BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_J: tl.constexpr,
    NUM_STAGES: tl.constexpr, QK_STAGES: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    dmask = offs_d < d
    h_em = h_em_ptr + b * T * d
    h_sp = h_sp_ptr + b * T * d
    bd = B * d
    q_out = saved_ptr + b * d
    # q = sum_t w_q[t] h_em[t]: the first read of this item's h_em
    q = tl.zeros((BLOCK_D,), tl.float32)
    for t0 in tl.range(0, T, BLOCK_T, num_stages=NUM_STAGES):
        offs_t = t0 + tl.arange(0, BLOCK_T)
        tmask = offs_t < T
        h = tl.load(h_em + offs_t[:, None] * d + offs_d[None, :],
                    mask=tmask[:, None] & dmask[None, :], other=0.0).to(tl.float32)
        w = tl.load(w_q_ptr + offs_t, mask=tmask, other=0.0).to(tl.float32)
        q += tl.sum(w[:, None] * h, axis=0)
    tl.store(q_out + offs_d, q, mask=dmask)
    tl.debug_barrier()  # q is read back in chunks by every thread
    # qk = q W_k^T, i.e. qk[i] = sum_j W_k[i, j] q[j]
    qk_em, qk_sp = _qk_staged(w_k_em_ptr, w_k_sp_ptr, q_out, offs_d, dmask, d, BLOCK_D, BLOCK_J,
                              QK_STAGES)
    tl.store(saved_ptr + bd + b * d + offs_d, qk_em, mask=dmask)
    tl.store(saved_ptr + 2 * bd + b * d + offs_d, qk_sp, mask=dmask)
    # the online softmax over the 2T rows: the second read of h_em, from L2
    m = tl.full((), float("-inf"), tl.float32)
    l = tl.zeros((), tl.float32)
    acc_em = tl.zeros((BLOCK_D,), tl.float32)
    acc_sp = tl.zeros((BLOCK_D,), tl.float32)
    a_base = b * 2 * T
    for t0 in tl.range(0, T, BLOCK_T, num_stages=NUM_STAGES):
        offs_t = t0 + tl.arange(0, BLOCK_T)
        m, l, acc_em, acc_sp = _rows_update(h_em, qk_em, offs_t, offs_d, T, d, scale, d,
                                            alpha_ptr, a_base, m, l, acc_em, acc_sp, True)
        m, l, acc_sp, acc_em = _rows_update(h_sp, qk_sp, offs_t, offs_d, T, d, scale, d,
                                            alpha_ptr, a_base + T, m, l, acc_sp, acc_em, True)
    inv = 1.0 / l
    tl.store(saved_ptr + 3 * bd + b * d + offs_d, acc_em * inv, mask=dmask)
    tl.store(saved_ptr + 4 * bd + b * d + offs_d, acc_sp * inv, mask=dmask)
    lse = m + tl.log(l)
    tl.debug_barrier()  # the raw scores written above are read back below
    for t0 in range(0, 2 * T, BLOCK_T):
        offs = t0 + tl.arange(0, BLOCK_T)
        amask = offs < 2 * T
        s = tl.load(alpha_ptr + a_base + offs, mask=amask, other=0.0)
        tl.store(alpha_ptr + a_base + offs, tl.exp(s - lse), mask=amask)


@triton.jit
def _large_rows_backward(h_ptr, qk, dp, alpha_ptr, dalpha_ptr, a_off, D, offs_t, offs_d, T, d,
                         scale, dqk, dh_ptr, g_ptr, DALPHA: tl.constexpr, EM: tl.constexpr):
    """One tile of rows of K1: dqk + this tile's share; for h_sp (EM False) dh written, for h_em
    (EM True) the scores' gradients g = scale ds written instead (K2 forms dh_em from them)."""
    tmask = offs_t < T
    m2 = tmask[:, None] & (offs_d[None, :] < d)
    h = tl.load(h_ptr + offs_t[:, None] * d + offs_d[None, :], mask=m2, other=0.0).to(tl.float32)
    a = tl.load(alpha_ptr + a_off + offs_t, mask=tmask, other=0.0)
    da = _dalpha(dalpha_ptr, a_off + offs_t, tmask, DALPHA)
    g = scale * (a * (tl.sum(h * dp[None, :], axis=1) + da - D))
    if EM:
        tl.store(g_ptr + offs_t, g, mask=tmask)
    else:
        dh = a[:, None] * dp[None, :] + g[:, None] * qk[None, :]
        tl.store(dh_ptr + offs_t[:, None] * d + offs_d[None, :], dh, mask=m2)
    return dqk + tl.sum(g[:, None] * h, axis=0)


@triton.jit
def _ssa_large_bwd_rows_kernel(
    h_em_ptr, h_sp_ptr,  # (B, T, d)
    saved_ptr,  # (5, B, d): q, qk_em, qk_sp, p_em, p_sp
    alpha_ptr,  # (B, 2T) float32
    dalpha_ptr,  # (B, 2T) contiguous (DALPHA 1) or one value broadcast (DALPHA 2), or unused (0)
    dp_ptr,  # (2, B, d) float32: dp_em, dp_sp
    dh_sp_ptr,  # (B, T, d) in h_sp's dtype
    dqk_ptr,  # (2, B, d) float32: dqk_em, dqk_sp
    g_em_ptr,  # (B, T) float32: scale ds of the h_em rows
    B, T, d, scale,
    DALPHA: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
    NUM_STAGES: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    dmask = offs_d < d
    bd = B * d
    qk_em = tl.load(saved_ptr + bd + b * d + offs_d, mask=dmask, other=0.0)
    qk_sp = tl.load(saved_ptr + 2 * bd + b * d + offs_d, mask=dmask, other=0.0)
    p_em = tl.load(saved_ptr + 3 * bd + b * d + offs_d, mask=dmask, other=0.0)
    p_sp = tl.load(saved_ptr + 4 * bd + b * d + offs_d, mask=dmask, other=0.0)
    dp_em = tl.load(dp_ptr + b * d + offs_d, mask=dmask, other=0.0)
    dp_sp = tl.load(dp_ptr + bd + b * d + offs_d, mask=dmask, other=0.0)
    # D = sum_t alpha_t dalpha_t (h_t . dp + the output gradient of alpha)
    D = tl.sum(p_em * dp_em, axis=0) + tl.sum(p_sp * dp_sp, axis=0)
    a_base = b * 2 * T
    if DALPHA != 0:
        for t0 in range(0, 2 * T, BLOCK_T):
            offs = t0 + tl.arange(0, BLOCK_T)
            amask = offs < 2 * T
            a = tl.load(alpha_ptr + a_base + offs, mask=amask, other=0.0)
            D += tl.sum(a * _dalpha(dalpha_ptr, a_base + offs, amask, DALPHA), axis=0)
    base = b * T * d
    dqk_em = tl.zeros((BLOCK_D,), tl.float32)
    dqk_sp = tl.zeros((BLOCK_D,), tl.float32)
    for t0 in tl.range(0, T, BLOCK_T, num_stages=NUM_STAGES):
        offs_t = t0 + tl.arange(0, BLOCK_T)
        dqk_sp = _large_rows_backward(h_sp_ptr + base, qk_sp, dp_sp, alpha_ptr, dalpha_ptr,
                                      a_base + T, D, offs_t, offs_d, T, d, scale, dqk_sp,
                                      dh_sp_ptr + base, g_em_ptr, DALPHA, False)
        dqk_em = _large_rows_backward(h_em_ptr + base, qk_em, dp_em, alpha_ptr, dalpha_ptr,
                                      a_base, D, offs_t, offs_d, T, d, scale, dqk_em,
                                      dh_sp_ptr, g_em_ptr + b * T, DALPHA, True)
    tl.store(dqk_ptr + b * d + offs_d, dqk_em, mask=dmask)
    tl.store(dqk_ptr + bd + b * d + offs_d, dqk_sp, mask=dmask)


@triton.jit
def _ssa_large_bwd_em_kernel(
    h_em_ptr,  # (B, T, d)
    saved_ptr,  # (5, B, d): qk_em is read
    alpha_ptr,  # (B, 2T) float32: the first T of each row are read
    g_em_ptr,  # (B, T) float32 from K1
    dp_ptr,  # (2, B, d): dp_em is read
    dq_ptr,  # (B, d) float32
    w_q_ptr,  # (T,) float32
    dh_em_ptr,  # (B, T, d) in h_em's dtype
    dwq_part_ptr,  # (B, T) float32: h_em[b, t] . dq[b]
    B, T, d,
    BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """dh_em[b, t] = alpha_t dp_em + g_t qk_em + w_q[t] dq for one item and one tile of rows."""
    b = tl.program_id(0).to(tl.int64)
    offs_t = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_d = tl.arange(0, BLOCK_D)
    dmask = offs_d < d
    tmask = offs_t < T
    m2 = tmask[:, None] & dmask[None, :]
    qk = tl.load(saved_ptr + B * d + b * d + offs_d, mask=dmask, other=0.0)
    dp = tl.load(dp_ptr + b * d + offs_d, mask=dmask, other=0.0)
    dq = tl.load(dq_ptr + b * d + offs_d, mask=dmask, other=0.0)
    a = tl.load(alpha_ptr + b * 2 * T + offs_t, mask=tmask, other=0.0)
    g = tl.load(g_em_ptr + b * T + offs_t, mask=tmask, other=0.0)
    wq = tl.load(w_q_ptr + offs_t, mask=tmask, other=0.0)
    rows = b * T * d + offs_t[:, None] * d + offs_d[None, :]
    h = tl.load(h_em_ptr + rows, mask=m2, other=0.0).to(tl.float32)
    dh = a[:, None] * dp[None, :] + g[:, None] * qk[None, :] + wq[:, None] * dq[None, :]
    tl.store(dh_em_ptr + rows, dh, mask=m2)
    tl.store(dwq_part_ptr + b * T + offs_t, tl.sum(h * dq[None, :], axis=1), mask=tmask)


def ssa_large_fwd_triton(h_em, h_sp, w_q, w_k_em, w_k_sp, scale: float):
    """(h_em, h_sp (B, T, d) float32 or a half type, w_q (T,), W_k (d, d) float32) -> alpha
    (B, 2T), saved (5, B, d) = q, qk_em, qk_sp, p_em, p_sp; float32."""
    h_em, h_sp = h_em.contiguous(), h_sp.contiguous()
    w_q, w_k_em, w_k_sp = (t.contiguous() for t in (w_q, w_k_em, w_k_sp))
    B, T, d = h_em.shape
    g = large_launch(h_em)
    f32 = dict(device=h_em.device, dtype=torch.float32)
    alpha = torch.empty(B, 2 * T, **f32)
    saved = torch.empty(5, B, d, **f32)
    with device_guard(h_em):
        _ssa_large_fwd_kernel[(B,)](
            h_em, h_sp, w_q, w_k_em, w_k_sp, alpha, saved, B, T, d, float(scale),
            BLOCK_T=g.block_t, BLOCK_D=g.block_d, BLOCK_J=g.block_j, NUM_STAGES=g.num_stages,
            QK_STAGES=g.qk_stages, num_warps=g.num_warps)
    return alpha, saved


def ssa_large_bwd_rows_triton(h_em, h_sp, saved, alpha, dp, dalpha, scale: float):
    """K1: dh_sp (h_sp's dtype), dqk (2, B, d) and g_em (B, T), float32. ``dp`` (2, B, d);
    ``dalpha`` (B, 2T) with any strides or None (copied unless contiguous or one value
    broadcast, as ``alpha.sum()`` hands over)."""
    h_em, h_sp, saved, alpha, dp = (
        t.contiguous() for t in (h_em, h_sp, saved, alpha, dp))
    B, T, d = h_em.shape
    g = large_launch(h_em)
    if dalpha is None:
        mode, dalpha = 0, alpha  # (not read)
    elif dalpha.stride() == (0, 0):
        mode = 2
    else:
        mode, dalpha = 1, dalpha.contiguous()
    f32 = dict(device=h_em.device, dtype=torch.float32)
    dh_sp = torch.empty(B, T, d, device=h_sp.device, dtype=h_sp.dtype)
    dqk = torch.empty(2, B, d, **f32)
    g_em = torch.empty(B, T, **f32)
    with device_guard(h_em):
        _ssa_large_bwd_rows_kernel[(B,)](
            h_em, h_sp, saved, alpha, dalpha, dp, dh_sp, dqk, g_em, B, T, d, float(scale),
            DALPHA=mode, BLOCK_T=g.block_t, BLOCK_D=g.block_d, NUM_STAGES=g.num_stages,
            num_warps=g.num_warps)
    return dh_sp, dqk, g_em


def ssa_large_bwd_em_triton(h_em, saved, alpha, g_em, dp, dq, w_q):
    """K2: dh_em (h_em's dtype) and dwq_part (B, T) float32 (its sum over the batch is dw_q)."""
    h_em, saved, alpha, g_em, dp, dq, w_q = (
        t.contiguous() for t in (h_em, saved, alpha, g_em, dp, dq, w_q))
    B, T, d = h_em.shape
    g = large_launch(h_em)
    dh_em = torch.empty(B, T, d, device=h_em.device, dtype=h_em.dtype)
    dwq_part = torch.empty(B, T, device=h_em.device, dtype=torch.float32)
    with device_guard(h_em):
        _ssa_large_bwd_em_kernel[(B, triton.cdiv(T, g.block_t_em))](
            h_em, saved, alpha, g_em, dp, dq, w_q, dh_em, dwq_part, B, T, d,
            BLOCK_T=g.block_t_em, BLOCK_D=g.block_d, num_warps=NUM_WARPS)
    return dh_em, dwq_part


# Registered ops, so that torch.compile treats the launchers as opaque nodes with known shapes.
@torch.library.custom_op("ssa_fast::ssa_large_fwd_triton", mutates_args=())
def ssa_large_fwd_triton_op(h_em: torch.Tensor, h_sp: torch.Tensor, w_q: torch.Tensor,
                            w_k_em: torch.Tensor, w_k_sp: torch.Tensor, scale: float
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    return ssa_large_fwd_triton(h_em, h_sp, w_q, w_k_em, w_k_sp, scale)


@ssa_large_fwd_triton_op.register_fake
def _(h_em, h_sp, w_q, w_k_em, w_k_sp, scale):
    B, T, d = h_em.shape
    f32 = dict(dtype=torch.float32, device=h_em.device)
    return torch.empty(B, 2 * T, **f32), torch.empty(5, B, d, **f32)


@torch.library.custom_op("ssa_fast::ssa_large_bwd_rows_triton", mutates_args=())
def ssa_large_bwd_rows_triton_op(h_em: torch.Tensor, h_sp: torch.Tensor, saved: torch.Tensor,
                                 alpha: torch.Tensor, dp: torch.Tensor,
                                 dalpha: torch.Tensor | None, scale: float
                                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return ssa_large_bwd_rows_triton(h_em, h_sp, saved, alpha, dp, dalpha, scale)


@ssa_large_bwd_rows_triton_op.register_fake
def _(h_em, h_sp, saved, alpha, dp, dalpha, scale):
    B, T, d = h_em.shape
    f32 = dict(dtype=torch.float32, device=h_em.device)
    return (torch.empty(B, T, d, dtype=h_sp.dtype, device=h_sp.device),
            torch.empty(2, B, d, **f32), torch.empty(B, T, **f32))


@torch.library.custom_op("ssa_fast::ssa_large_bwd_em_triton", mutates_args=())
def ssa_large_bwd_em_triton_op(h_em: torch.Tensor, saved: torch.Tensor, alpha: torch.Tensor,
                               g_em: torch.Tensor, dp: torch.Tensor, dq: torch.Tensor,
                               w_q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return ssa_large_bwd_em_triton(h_em, saved, alpha, g_em, dp, dq, w_q)


@ssa_large_bwd_em_triton_op.register_fake
def _(h_em, saved, alpha, g_em, dp, dq, w_q):
    B, T, d = h_em.shape
    return (torch.empty(B, T, d, dtype=h_em.dtype, device=h_em.device),
            torch.empty(B, T, dtype=torch.float32, device=h_em.device))


class SSALargeFunction(torch.autograd.Function):
    """The autograd boundary of the large-batch path: the kernels above around the d x d
    products in torch (cuBLAS on a GPU). Same dtype rule as function.py's other boundaries:
    h float32 or a half type, weights float32; c and alpha in h's (promoted) dtype, each
    gradient in its input's dtype."""

    @staticmethod
    def forward(ctx, h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp, scale, combine):
        alpha, saved = ssa_large_fwd_triton_op(h_em, h_sp, w_q, w_k_em, w_k_sp, scale)
        with torch.autocast(h_em.device.type, enabled=False):  # (float32 products, whatever)
            c = combine_outputs(saved[3] @ w_v_em, saved[4] @ w_v_sp, combine)
        ctx.save_for_backward(h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp, saved, alpha)
        ctx.scale, ctx.combine = scale, combine
        out = torch.promote_types(h_em.dtype, h_sp.dtype)
        return c.to(out), alpha.to(out)

    @staticmethod
    def backward(ctx, dc, dalpha):
        refuse_double_backward("triton")
        h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp, saved, alpha = ctx.saved_tensors
        q, p_em, p_sp = saved[0], saved[3], saved[4]
        B, T, d = h_em.shape
        if dc is None:
            dc = alpha.new_zeros(B, 2 * d if ctx.combine == "concat" else d)
        dc = dc.to(torch.float32)
        dc_em, dc_sp = (dc[:, :d], dc[:, d:]) if ctx.combine == "concat" else (dc, dc)
        dw_v_em, dw_v_sp = p_em.T @ dc_em, p_sp.T @ dc_sp
        dp = torch.stack((dc_em @ w_v_em.T, dc_sp @ w_v_sp.T))  # (2, B, d)
        dh_sp, dqk, g_em = ssa_large_bwd_rows_triton_op(h_em, h_sp, saved, alpha, dp, dalpha,
                                                        ctx.scale)
        # qk = q W_k^T: dq = dqk W_k, dW_k = dqk^T q (cuBLAS)
        dq = dqk[0] @ w_k_em + dqk[1] @ w_k_sp
        dw_k_em, dw_k_sp = dqk[0].T @ q, dqk[1].T @ q
        dh_em, dwq_part = ssa_large_bwd_em_triton_op(h_em, saved, alpha, g_em, dp, dq, w_q)
        return (dh_em, dh_sp, dwq_part.sum(0), dw_k_em, dw_k_sp, dw_v_em, dw_v_sp, None, None)
