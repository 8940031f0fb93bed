"""Triton backend of the 3-D log-Mel (launchers only, no autograd).

The FFT runs in cuFFT (``torch.fft.rfft`` of the windowed frames); everything after it is one
kernel: power -> mel (a tile matmul) -> log -> delta -> delta-delta -> the three output channels.

A program owns ``BLOCK_R - 2 * HALO`` output frames of one item and recomputes the static log-Mel
of ``HALO = 4`` frames on either side (the reach of delta-delta). Inside the tile both
regressions are products with one banded ``(BLOCK_R, BLOCK_R)`` matrix ``D`` built from indices:

    D[i, j] = sum_{n=1,2} n * ([j == clamp(g_i + n) - base] - [j == clamp(g_i - n) - base])
    delta = 0.1 * (D @ c)

where ``g_i = base + i`` is row i's frame and clamp is to the item's own ``[0, n_frames - 1]``,
so replicate padding happens at each item's end, not at the batch's. D's entries are small
integers (exact in any float format); the products are fp32 ("ieee"), so a constant input gives a
delta of ~1e-6 rather than the exact 0 of the explicit differences.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from ..._backend import triton_interpret
from .._triton_common import NUM_WARPS, device_guard, logmel_launch
from .reference import frame_count, logmel_delta_fake


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
    MEL_PRECISION: tl.constexpr, HALO: tl.constexpr,
):
    pid_t = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    rows = tl.arange(0, BLOCK_R)
    base = pid_t * (BLOCK_R - 2 * HALO) - HALO
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
    # NaN-propagating max: a NaN power (a NaN sample, unchecked on the GPU) stays NaN instead of
    # becoming log(amin), a finite wrong value.
    c = tl.log(tl.maximum(acc, amin, propagate_nan=tl.PropagateNan.ALL))
    D = _delta_matrix(g, rows, base, n_frames)
    d = tl.dot(D, c, input_precision="ieee") * 0.1
    dd = tl.dot(D, d, input_precision="ieee") * 0.1

    keep = (rows >= HALO) & (rows < BLOCK_R - HALO) & (g < T)
    smask = keep[:, None] & mmask[None, :]
    past_end = (g >= n_frames)[:, None]
    optr = out_ptr + b * stride_ob + g.to(tl.int64)[:, None] * stride_ot + mcols[None, :]
    tl.store(optr, tl.where(past_end, 0.0, c), mask=smask)
    tl.store(optr + stride_oc, tl.where(past_end, 0.0, d), mask=smask)
    tl.store(optr + 2 * stride_oc, tl.where(past_end, 0.0, dd), mask=smask)


def logmel_delta_triton(
    waveform: torch.Tensor,  # (B, N) float32
    lengths: torch.Tensor | None,  # (B,) int64 on waveform's device, or None
    window: torch.Tensor,  # (n_fft,) float32
    mel_fb: torch.Tensor,  # (M, F) float32
    hop_length: int,
    center: bool,
    amin: float,
    *,
    mel_precision: str = "ieee",
    block_rows: int | None = None,
    block_freqs: int | None = None,
) -> torch.Tensor:  # (B, 3, T, M)
    """The launcher. No host synchronisation: per-item frame counts stay on the device and T
    comes from the shape of the framed signal."""
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
    launch = logmel_launch(B, T, M, interpret=triton_interpret(), block_rows=block_rows,
                           block_freqs=block_freqs)
    with device_guard(out):
        _logmel_delta_kernel[launch.grid](
            spec, mel_fb.contiguous(), n_frames, out,
            T, F, M, float(amin),
            spec.stride(0), spec.stride(1), out.stride(0), out.stride(1), out.stride(2),
            BLOCK_R=launch.block_r, BLOCK_F=launch.block_f, BLOCK_M=launch.block_m,
            MEL_PRECISION=mel_precision, HALO=launch.halo, num_warps=NUM_WARPS,
        )
    return out


# Registered op, so that torch.compile traces the launcher (FFT, padding, kernel) as one opaque
# node with a known output shape; its fake kernel is the native op's (reference.py), in float32.
@torch.library.custom_op("ssa_fast::logmel_delta_triton", mutates_args=())
def logmel_delta_triton_op(waveform: torch.Tensor, lengths: torch.Tensor | None,
                           window: torch.Tensor, mel_fb: torch.Tensor, hop_length: int,
                           center: bool, amin: float) -> torch.Tensor:
    return logmel_delta_triton(waveform, lengths, window, mel_fb, hop_length, center, amin)


logmel_delta_triton_op.register_fake(functools.partial(logmel_delta_fake, dtype=torch.float32))
