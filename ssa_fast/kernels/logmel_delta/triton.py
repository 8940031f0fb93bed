"""Triton backend of the 3-D log-Mel (launchers only, no autograd).

The FFT runs in cuFFT (``torch.fft.rfft`` of the windowed frames); everything after it is one
kernel: power -> mel (a tile matmul) -> log -> delta -> delta-delta -> the three output channels.

A program owns ``BLOCK_R - 8`` output frames of one item and recomputes the static log-Mel of 4
frames on either side (the reach of delta-delta). Inside the tile both regressions are products
with one banded ``(BLOCK_R, BLOCK_R)`` matrix ``D`` built from indices:

    D[i, j] = sum_{n=1,2} n * ([j == clamp(g_i + n) - base] - [j == clamp(g_i - n) - base])
    delta = 0.1 * (D @ c)

where ``g_i = base + i`` is row i's frame and clamp is to the item's own ``[0, n_frames - 1]``,
so replicate padding happens at each item's end, not at the batch's. D's entries are small
integers (exact in any float format); the products are fp32 ("ieee"), so a constant input gives a
delta of ~1e-6 rather than the exact 0 of the explicit differences.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..._backend import triton_interpret
from .reference import frame_count

HALO = 4


@triton.jit
def _delta_matrix(g, rows, base, n_frames):
    gi = g[:, None]
    j = rows[None, :]
    last = n_frames - 1
    p1 = tl.minimum(tl.maximum(gi + 1, 0), last) - base
    m1 = tl.minimum(tl.maximum(gi - 1, 0), last) - base
    p2 = tl.minimum(tl.maximum(gi + 2, 0), last) - base
    m2 = tl.minimum(tl.maximum(gi - 2, 0), last) - base
    one = (j == p1).to(tl.float32) - (j == m1).to(tl.float32)
    two = (j == p2).to(tl.float32) - (j == m2).to(tl.float32)
    return one + 2.0 * two


@triton.jit
def _logmel_delta_kernel(
    spec_ptr,  # (B, T, F, 2) float32, real view of the spectrum
    fb_ptr,  # (M, F) float32
    nfr_ptr,  # (B,) int32 frames per item
    out_ptr,  # (B, 3, T, M) float32
    T, F, M, amin,
    stride_sb, stride_st, stride_ob, stride_oc, stride_ot,
    BLOCK_R: tl.constexpr, BLOCK_F: tl.constexpr, BLOCK_M: tl.constexpr,
    MEL_PRECISION: tl.constexpr,
):
    pid_t = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    rows = tl.arange(0, BLOCK_R)
    base = pid_t * (BLOCK_R - 8) - 4
    g = base + rows
    n_frames = tl.load(nfr_ptr + b)
    valid = (g >= 0) & (g < n_frames)
    mcols = tl.arange(0, BLOCK_M)
    mmask = mcols < M

    spec_rows = spec_ptr + b * stride_sb + g.to(tl.int64)[:, None] * stride_st
    acc = tl.zeros((BLOCK_R, BLOCK_M), dtype=tl.float32)
    for f0 in range(0, F, BLOCK_F):
        f = f0 + tl.arange(0, BLOCK_F)
        fmask = f < F
        lmask = valid[:, None] & fmask[None, :]
        re = tl.load(spec_rows + 2 * f[None, :], mask=lmask, other=0.0)
        im = tl.load(spec_rows + 2 * f[None, :] + 1, mask=lmask, other=0.0)
        power = re * re + im * im
        fb = tl.load(fb_ptr + mcols[None, :] * F + f[:, None],
                     mask=fmask[:, None] & mmask[None, :], other=0.0)
        acc = tl.dot(power, fb, acc, input_precision=MEL_PRECISION)
    # Rows outside the item hold log(amin): finite, and never selected by D for a kept row.
    c = tl.log(tl.maximum(acc, amin))
    D = _delta_matrix(g, rows, base, n_frames)
    d = tl.dot(D, c, input_precision="ieee") * 0.1
    dd = tl.dot(D, d, input_precision="ieee") * 0.1

    keep = (rows >= 4) & (rows < BLOCK_R - 4) & (g < T)
    smask = keep[:, None] & mmask[None, :]
    past_end = (g >= n_frames)[:, None]
    optr = out_ptr + b * stride_ob + g.to(tl.int64)[:, None] * stride_ot + mcols[None, :]
    tl.store(optr, tl.where(past_end, 0.0, c), mask=smask)
    tl.store(optr + stride_oc, tl.where(past_end, 0.0, d), mask=smask)
    tl.store(optr + 2 * stride_oc, tl.where(past_end, 0.0, dd), mask=smask)


def default_block_rows() -> int:
    # The interpreter pays per program instance: few, large tiles there.
    return 128 if triton_interpret() else 64


def logmel_delta_triton(
    waveform: torch.Tensor,  # (B, N) float32
    lengths: torch.Tensor | None,  # (B,) int64, or None
    window: torch.Tensor,  # (n_fft,) float32
    mel_fb: torch.Tensor,  # (M, F) float32
    hop_length: int,
    center: bool,
    amin: float,
    *,
    mel_precision: str = "ieee",
    block_rows: int | None = None,
    block_freqs: int = 64,
) -> torch.Tensor:  # (B, 3, T, M)
    B, N = waveform.shape
    n_fft = window.shape[0]
    M, F = mel_fb.shape
    x = waveform
    if lengths is None:
        lengths = torch.full((B,), N, dtype=torch.int64, device=x.device)
    else:
        inside = torch.arange(N, device=x.device) < lengths[:, None]
        x = torch.where(inside, x, torch.zeros((), dtype=x.dtype, device=x.device))
    if center:
        x = torch.nn.functional.pad(x, (n_fft // 2, n_fft // 2))
    frames = x.unfold(-1, n_fft, hop_length)  # (B, T, n_fft) view
    spec = torch.view_as_real(torch.fft.rfft(frames * window, dim=-1))  # (B, T, F, 2)
    T = spec.shape[1]
    n_frames = frame_count(lengths, n_fft, hop_length, center).to(torch.int32)
    out = torch.empty(B, 3, T, M, dtype=torch.float32, device=x.device)
    block_r = block_rows or default_block_rows()
    block_m = max(16, triton.next_power_of_2(M))
    grid = (triton.cdiv(T, block_r - 2 * HALO), B)
    _logmel_delta_kernel[grid](
        spec, mel_fb.contiguous(), n_frames, out,
        T, F, M, float(amin),
        spec.stride(0), spec.stride(1), out.stride(0), out.stride(1), out.stride(2),
        BLOCK_R=block_r, BLOCK_F=block_freqs, BLOCK_M=block_m, MEL_PRECISION=mel_precision,
        num_warps=4,
    )
    return out
