"""Triton backend of the 3-D log-Mel (launchers only, no autograd).

The FFT runs in cuFFT (``torch.fft.rfft`` of the windowed frames); everything after it is one
kernel: power -> mel -> log -> delta -> delta-delta -> the three output channels.

A tile is ``BLOCK_R`` frames of one item, of which the middle ``BLOCK_R - 2 * HALO`` are output:
its program recomputes the static log-Mel of ``HALO = 4`` frames on either side (the reach of
delta-delta). Per tile:

- *mel as a banded sum*: each filter sums only its non-zero bins ``[lo, hi)`` (found once per
  program from the bank), ``BLOCK_C`` filters at a time, step j gathering bin ``lo + j`` of each
  of them for every frame: for 40 Slaney filters at n_fft 512, 992 products per frame (490
  non-zeros, each group of 16 filters padded to its widest), not the dense 40 x 257 = 10,280;
- *deltas as explicit differences* (the HTK regression, as the reference computes it),

      delta_t = 0.1 * ((c[t+1] - c[t-1]) + 2 (c[t+2] - c[t-2])),   neighbours clamped to the item

  so replicate padding happens at each item's end, not at the batch's. A frame's neighbours
  live in other threads' registers, so the program writes the tile to a scratch slot of its own
  (``2 * BLOCK_R * BLOCK_M`` floats, in cache), waits at a barrier and reads the shifted rows
  back as gathers: the static tile for the delta, the delta for the delta-delta.

The kernel is persistent: a few programs per multiprocessor, one scratch slot each, looping over
the tiles, so the scratch is small whatever the batch. It works in steps of ``BLOCK_C`` filters
throughout (no whole tile of values and pointers is live at once) and reads each spectrum bin as
one 8-byte load (the complex64 bits), which keeps its hot loop free of layout conversions.
Before (the deltas as products with a banded ``(BLOCK_R, BLOCK_R)`` matrix, the mel product
dense, both fp32 ``tl.dot``) it spilled 3-10 KB per thread (ptxas, sm_90a); now no
specialisation spills under Triton 3.6 or 3.9 (benchmarks/triton_aot.py, docs/design.md 10.1b).
Float32 throughout: other inputs are computed in float32 (the public API sends only float32).
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from ..._backend import triton_interpret
from .._triton_common import (
    LOGMEL_MAX_REGISTERS,
    NUM_WARPS,
    device_guard,
    logmel_launch,
    sm_count,
)
from .reference import frame_count, logmel_delta_fake


@triton.jit
def _row_of(frame, n_frames, base, BLOCK_R: tl.constexpr):
    """The tile row holding ``frame`` clamped to the item's frames (replicate padding), clamped
    to the tile (rows near the tile's edge, whose values no kept row reads)."""
    clamped = tl.minimum(tl.maximum(frame, 0), n_frames - 1)
    return tl.minimum(tl.maximum(clamped - base, 0), BLOCK_R - 1)


@triton.jit
def _delta_rows(src, g, base, n_frames, cols, BLOCK_R: tl.constexpr, BLOCK_M: tl.constexpr):
    """The N = 2 regression of the ``(BLOCK_R, BLOCK_M)`` tile at ``src`` along its rows (row i
    is frame g_i = base + i), for the columns ``cols``."""
    at = src + cols[None, :]
    one = (tl.load(at + _row_of(g + 1, n_frames, base, BLOCK_R)[:, None] * BLOCK_M)
           - tl.load(at + _row_of(g - 1, n_frames, base, BLOCK_R)[:, None] * BLOCK_M))
    two = (tl.load(at + _row_of(g + 2, n_frames, base, BLOCK_R)[:, None] * BLOCK_M)
           - tl.load(at + _row_of(g - 2, n_frames, base, BLOCK_R)[:, None] * BLOCK_M))
    return (one + 2.0 * two) * 0.1


@triton.jit
def _logmel_delta_kernel(
    spec_ptr,  # (B, T, F) int64: the complex64 spectrum's bits (real part in the low half)
    fb_ptr,  # (M, F) float32
    nfr_ptr,  # (B,) int32 frames per item
    out_ptr,  # (B, 3, T, M) float32
    work_ptr,  # (programs, 2, BLOCK_R, BLOCK_M) float32 scratch, one slot per program
    band_ptr,  # (programs, 2, BLOCK_M) int32 scratch: each filter's non-zero bins [lo, hi)
    T, F, M, amin, n_tiles, tiles_per_item,
    stride_sb, stride_st, stride_ob, stride_oc, stride_ot,
    BLOCK_R: tl.constexpr, BLOCK_F: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr,
    HALO: tl.constexpr,
):
    rows = tl.arange(0, BLOCK_R)
    slot = work_ptr + tl.program_id(0).to(tl.int64) * (2 * BLOCK_R * BLOCK_M)
    bands = band_ptr + tl.program_id(0).to(tl.int64) * (2 * BLOCK_M)

    # Each filter's non-zero bins [lo, hi), found once per program, BLOCK_C filters at a time (a
    # filter with none has lo >= hi and sums nothing; so do the columns past M).
    for m0 in range(0, M, BLOCK_C):
        cols = m0 + tl.arange(0, BLOCK_C)
        lo = tl.full((BLOCK_C,), 0, tl.int32) + F
        hi = tl.zeros((BLOCK_C,), tl.int32)
        for f0 in range(0, F, BLOCK_F):
            f = f0 + tl.arange(0, BLOCK_F)
            w = tl.load(fb_ptr + cols[:, None] * F + f[None, :],
                        mask=(cols < M)[:, None] & (f < F)[None, :], other=0.0)
            nz = w != 0.0
            lo = tl.minimum(lo, tl.min(tl.where(nz, f[None, :], F), axis=1))
            hi = tl.maximum(hi, tl.max(tl.where(nz, f[None, :] + 1, 0), axis=1))
        tl.store(bands + cols, lo)
        tl.store(bands + BLOCK_M + cols, hi)
    tl.debug_barrier()

    for tile in range(tl.program_id(0), n_tiles, tl.num_programs(0)):
        b = (tile // tiles_per_item).to(tl.int64)
        base = (tile % tiles_per_item) * (BLOCK_R - 2 * HALO) - HALO
        g = base + rows
        n_frames = tl.load(nfr_ptr + b)
        valid = (g >= 0) & (g < n_frames)
        spec_rows = spec_ptr + b * stride_sb + g.to(tl.int64)[:, None] * stride_st

        # The mel product as a banded sum, BLOCK_C filters at a time: step j adds bin lo + j of
        # each filter (a gather of BLOCK_C bins per frame), for as many steps as the widest of
        # them has bins; the sums go to the slot (the whole tile is then read back below).
        for m0 in range(0, M, BLOCK_C):
            cols = m0 + tl.arange(0, BLOCK_C)
            lo_c = tl.load(bands + cols)
            width = tl.load(bands + BLOCK_M + cols) - lo_c
            energy = tl.zeros((BLOCK_R, BLOCK_C), dtype=tl.float32)
            bins = spec_rows + lo_c[None, :]  # bin lo + j of each filter, for every frame
            weights = (fb_ptr + cols * F + lo_c)[None, :]
            wide = width[None, :]
            for j in range(0, tl.max(width)):
                on = j < wide
                # one 8-byte load a bin (two float32 loads took two layouts, and the sum of
                # their squares a conversion through shared memory every step)
                z = tl.load(bins, mask=valid[:, None] & on, other=0)
                re = z.to(tl.uint32).to(tl.float32, bitcast=True)
                im = (z >> 32).to(tl.uint32).to(tl.float32, bitcast=True)
                w = tl.load(weights, mask=on, other=0.0)
                energy += (re * re + im * im) * w
                bins += 1
                weights += 1
            tl.store(slot + rows[:, None] * BLOCK_M + cols[None, :], energy)
        tl.debug_barrier()
        # Then the three channels, BLOCK_C filters at a time (a whole tile's pointers and values
        # at once would not fit in registers), each channel after a barrier.
        keep = (rows >= HALO) & (rows < BLOCK_R - HALO) & (g < T)
        past_end = (g >= n_frames)[:, None]
        out_rows = out_ptr + b * stride_ob + g.to(tl.int64)[:, None] * stride_ot
        for m0 in range(0, M, BLOCK_C):
            cols = m0 + tl.arange(0, BLOCK_C)
            at = rows[:, None] * BLOCK_M + cols[None, :]
            # Rows outside the item hold log(amin): finite, and never read for a kept row.
            # NaN-propagating max: a NaN power (a NaN sample, unchecked on the GPU) stays NaN
            # instead of becoming log(amin), a finite wrong value.
            c = tl.log(tl.maximum(tl.load(slot + at), amin, propagate_nan=tl.PropagateNan.ALL))
            smask = keep[:, None] & (cols < M)[None, :]
            tl.store(out_rows + cols[None, :], tl.where(past_end, 0.0, c), mask=smask)
            tl.store(slot + BLOCK_R * BLOCK_M + at, c)
        tl.debug_barrier()
        for m0 in range(0, M, BLOCK_C):
            cols = m0 + tl.arange(0, BLOCK_C)
            d = _delta_rows(slot + BLOCK_R * BLOCK_M, g, base, n_frames, cols, BLOCK_R, BLOCK_M)
            smask = keep[:, None] & (cols < M)[None, :]
            tl.store(out_rows + stride_oc + cols[None, :], tl.where(past_end, 0.0, d), mask=smask)
            tl.store(slot + rows[:, None] * BLOCK_M + cols[None, :], d)
        tl.debug_barrier()
        for m0 in range(0, M, BLOCK_C):
            cols = m0 + tl.arange(0, BLOCK_C)
            dd = _delta_rows(slot, g, base, n_frames, cols, BLOCK_R, BLOCK_M)
            smask = keep[:, None] & (cols < M)[None, :]
            tl.store(out_rows + 2 * stride_oc + cols[None, :], tl.where(past_end, 0.0, dd),
                     mask=smask)
        tl.debug_barrier()  # (the next tile's energies overwrite what dd read)


def logmel_delta_triton(
    waveform: torch.Tensor,  # (B, N) float32
    lengths: torch.Tensor | None,  # (B,) int64 on waveform's device, or None
    window: torch.Tensor,  # (n_fft,) float32
    mel_fb: torch.Tensor,  # (M, F) float32
    hop_length: int,
    center: bool,
    amin: float,
    *,
    block_rows: int | None = None,
    block_freqs: int | None = None,
    block_filters: int | None = None,
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
    # (B, T, F) int64: the complex64 bits (a float64 input's complex128 viewed so would be
    # read as half-words)
    spec = torch.fft.rfft(frames * window, dim=-1).to(torch.complex64).view(torch.int64)
    T = spec.shape[1]
    n_frames = frame_count(lengths, n_fft, hop_length, center).to(torch.int32)
    out = torch.empty(B, 3, T, M, dtype=torch.float32, device=x.device)
    launch = logmel_launch(B, T, M, sm_count=sm_count(out), interpret=triton_interpret(),
                           block_rows=block_rows, block_freqs=block_freqs,
                           block_filters=block_filters)
    work = torch.empty(launch.grid[0], 2, launch.block_r, launch.block_m, dtype=torch.float32,
                       device=x.device)
    bands = torch.empty(launch.grid[0], 2, launch.block_m, dtype=torch.int32, device=x.device)
    with device_guard(out):
        _logmel_delta_kernel[launch.grid](
            spec, mel_fb.to(torch.float32).contiguous(), n_frames, out, work, bands,
            T, F, M, float(amin), launch.tiles, launch.tiles_per_item,
            spec.stride(0), spec.stride(1), out.stride(0), out.stride(1), out.stride(2),
            BLOCK_R=launch.block_r, BLOCK_F=launch.block_f, BLOCK_M=launch.block_m,
            BLOCK_C=launch.block_c, HALO=launch.halo, num_warps=NUM_WARPS,
            maxnreg=LOGMEL_MAX_REGISTERS,
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
