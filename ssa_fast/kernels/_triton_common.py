"""Launch geometry of every Triton kernel of the library, as plain functions of the problem shape.

The launchers call these functions and nothing else decides a block size, so the set of
specialisations the library can launch is exactly what these functions return; an ahead-of-time
compile check can enumerate it by calling them over the shapes users run. Importable without
Triton; the sizing functions query nothing (the device's SM count and the interpreter flag are
arguments).

All kernels are launched with float32 tensors only (the autograd boundaries in
``kernels/<op>/function.py`` convert half inputs first); ``l1_project_`` also takes float16 /
bfloat16 weights in place (it reads them as float32 and writes their own dtype back).

Block sizes per shape (GPU; ``interpret=True`` noted where it differs):

``_ssa_fwd_kernel`` / ``_ssa_bwd_kernel`` (:func:`ssa_launch`), h (B, T, d):
    BLOCK_D = max(16, next_pow2(d))            d = 64 -> 64, d = 65 -> 128, d = 512 -> 512
    BLOCK_T = max(1, min(next_pow2(T), 8192 // BLOCK_D // u))  (interpreter: min(next_pow2(T), 256))
              u = 1 when d % 16 == 0, else 4 (unvectorised rows need ~4x the registers)
              d <= 64 -> up to 128 rows, d = 256 -> 32, d = 512 -> 16, d = 100 -> 16
    SPLITS  = slices of T per item, enough programs for two waves over the SMs but slices of at
              least one tile: min(cdiv(2 * sm_count, B), cdiv(T, BLOCK_T)), then rounded so that
              no slice is empty. SPLITS == 1 and SPLITS > 1 are two specialisations.
``_ssa_fused_fwd_kernel`` / ``_ssa_fused_bwd_kernel`` (:func:`ssa_fused_launch`): the whole op in
one launch per direction, for batches of at most one program per SM (B <= sm_count; the
interpreter stands for a GPU of SSA_INTERPRET_SMS = 4 SMs, so the tests' batches take both paths),
d <= 512:
    BLOCK_D as above; BLOCK_T = max(1, min(next_pow2(T), 4096 // BLOCK_D // u)) (interpreter: 256)
    BLOCK_J = max(1, 4096 // BLOCK_D // u)   columns of a W chunk in the matrix-vector steps
    BLOCK_I = 16                         rows of a weight-gradient program
    BLOCK_TQ = min(next_pow2(T), 1024)   steps of the dw_q reduction
    backward grid: B item programs + 4 cdiv(d, BLOCK_I) weight-gradient programs + cdiv(T, BLOCK_TQ)
    8 warps (SSA_FUSED_WARPS), at most 128 registers a thread (SSA_FUSED_MAX_REGISTERS)
``_ssa_large_*`` kernels (:func:`ssa_large_launch`): the large-batch path (design.md 10.2),
one program per item in the forward and in the first backward kernel, one per item and tile of
rows in the second:
    BLOCK_D as above; BLOCK_T = max(1, min(next_pow2(T), 64, 16384 // BLOCK_D // u))
              (interpreter: min(next_pow2(T), 256)); d = 256 -> 64 rows, d = 512 -> 32
    BLOCK_J = min(BLOCK_D, 4096 // BLOCK_D)   columns of the W_k chunks (both keys) per step of
              the forward's qk = W_k q (d = 256 -> 16); QK_STAGES = NUM_STAGES; where d is not a
              multiple of 16: BLOCK_J = 8, QK_STAGES = 1
    NUM_STAGES = 2 (rows of the next tile loaded while this one is reduced), 8 warps
    second backward kernel (one program per item and tile, no loop): BLOCK_T =
              max(1, min(next_pow2(T), 4096 // BLOCK_D // u)) (d = 256 -> 16; interpreter: as
              above), 4 warps, so that several programs share an SM
``_logmel_delta_kernel`` (:func:`logmel_launch`), B items of T frames, n_mels M:
    grid    = (min(tiles, sm_count x P),), P = 4 programs per SM (BLOCK_M 256: 2, beyond: 1):
              persistent programs, each with a scratch slot, looping over the
              B x cdiv(T, BLOCK_R - 2 HALO) tiles (interpreter: LOGMEL_INTERPRET_PROGRAMS = 2,
              so that tests run the loop)
    BLOCK_R = 64 frames per tile (interpreter: 256), of which 2 * LOGMEL_HALO are recomputed
    BLOCK_M = max(16, next_pow2(M))            M = 40 -> 64, M = 64 -> 64, M = 128 -> 128
    BLOCK_C = 16 filters per step of the banded mel sum and of the deltas (interpreter: BLOCK_M)
    BLOCK_F = 16 bins per step of the search for each filter's non-zero bins (interpreter: 64)
    HALO    = LOGMEL_HALO = 4 (delta-delta of frame t reads the static frames t - 4 .. t + 4)
    4 warps; registers and spills: benchmarks/RESULTS.md (none spills, 40 to 300 filters)
``_l1_project_kernel`` (:func:`l1_launch`), weight (K, n), x with x_numel elements:
    BLOCK_N = max(16, next_pow2(n)); BLOCK_K = max(1, min(next_pow2(K), 4096 // BLOCK_N));
    BLOCK_X = min(4096, max(16, next_pow2(x_numel)))
"""

from __future__ import annotations

import contextlib
import functools
from typing import NamedTuple

import torch

# Reach of the delta-delta regression (two N = 2 regressions): frames on either side of a tile
# whose static log-Mel a program recomputes.
LOGMEL_HALO = 4
LOGMEL_BLOCK_ROWS = 64  # frames per program on a GPU
LOGMEL_BLOCK_ROWS_INTERPRET = 256  # the interpreter pays per step, not per element: few tiles
LOGMEL_BLOCK_FREQS = 16  # bins per step of the search for each filter's non-zero bins
LOGMEL_BLOCK_FREQS_INTERPRET = 64
LOGMEL_BLOCK_FILTERS = 16  # filters per step (interpreter: all of them, fewer steps)
LOGMEL_PROGRAMS_PER_SM = 4  # persistent programs (scratch slots) per SM, up to 128 filters
LOGMEL_INTERPRET_PROGRAMS = 2  # the interpreter's: few, so that tests run the tile loop
SSA_TILE_ELEMENTS = 8192  # rows x BLOCK_D of one SSA tile on a GPU
SSA_INTERPRET_ROWS = 256
SSA_FUSED_TILE_ELEMENTS = 4096  # rows x BLOCK_D of one tile of the one-launch SSA kernels
SSA_FUSED_MAX_D = 512
SSA_INTERPRET_SMS = 4
SSA_LARGE_ROWS = 64  # rows of one tile of the large-batch SSA kernels
SSA_LARGE_TILE_ELEMENTS = 16384  # rows x BLOCK_D at most (d = 512: 32 rows)
SSA_LARGE_STAGES = 2
SSA_LARGE_WARPS = 8
SSA_FUSED_MAX_SPINS = 1 << 24  # polls of a waiting weight-gradient program (seconds) before NaN
L1_TILE_ELEMENTS = 4096
L1_MAX_BLOCK_X = 4096
NUM_WARPS = 4  # every kernel of the library but the one-launch SSA kernels and wide SSA tiles
# The two-kernel SSA path at BLOCK_D = 512: with 4 warps its backward held 2 x 64 floats of a tile
# per thread, took 255 registers and spilled 28 bytes inside the row loop (Triton 3.6 and 3.9);
# with 8 it takes at most 165 (3.9) / 176 (3.6), no spill, and an SM holds the same 8 warps as
# before (one program, not two).
SSA_WIDE_BLOCK_D = 512
# The Triton log-Mel kernel's register ceiling: without one, Triton 3.9's ptxas (run with
# --regAllocOptLevel=2) stopped at 72-80 registers and spilled 4 bytes in every specialisation;
# 128 x 128 threads x 4 programs is an SM's registers (Triton 3.6 took 124-128 without it).
LOGMEL_MAX_REGISTERS = 128
SSA_WIDE_WARPS = 8
# The one-launch SSA kernels: with 4 warps ptxas spilled 4-20 bytes under Triton 3.6 (bf16 rows,
# d = 256 and 512); at most one program per SM runs them, so 8 warps cost no occupancy.
SSA_FUSED_WARPS = 8
# Their register ceiling (PTX .maxnreg). Left without one, ptxas stopped at 80 registers and spilled
# 4-32 bytes in a few specialisations (Triton 3.6's ptxas at d = 64 in float32; Triton 3.9's, which
# it runs with --regAllocOptLevel=2, at d = 512); told it may use 128 it used 96-106 there, no
# spill. 128 x 256 threads is half an SM's registers, and at most one item program runs per SM.
SSA_FUSED_MAX_REGISTERS = 128


def device_guard(t: torch.Tensor):
    """Make t's GPU the current device for a launch (Triton launches on the current device, so a
    tensor on cuda:1 would otherwise be read by a kernel running on cuda:0); a no-op on the CPU."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def sm_count(t: torch.Tensor) -> int | None:
    """Multiprocessors of the GPU holding t (None on the CPU)."""
    return _sm_count(t.device.index if t.device.index is not None else
                     torch.cuda.current_device()) if t.is_cuda else None


@functools.cache
def _sm_count(index: int) -> int:  # (queried once per device, not on every launch)
    return torch.cuda.get_device_properties(index).multi_processor_count


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def cdiv(a: int, b: int) -> int:
    return -(-int(a) // int(b))


class SSALaunch(NamedTuple):
    splits: int  # programs per item along T (grid (B, splits)); constexpr SPLITS
    rows_per_split: int
    block_t: int  # constexpr BLOCK_T
    block_d: int  # constexpr BLOCK_D
    num_warps: int


def ssa_launch(B: int, T: int, d: int, *, sm_count: int | None = None, interpret: bool = False,
               splits: int | None = None, block_t: int | None = None) -> SSALaunch:
    """Geometry of the SSA core kernels (forward and backward use the same one).

    ``sm_count`` is the launching device's multiprocessor count (None: one slice per item, as in
    the interpreter); ``splits`` / ``block_t`` override the choice (tests of every code path).
    """
    block_d = max(16, next_pow2(d))
    if block_t is None:
        cap = SSA_INTERPRET_ROWS if interpret else SSA_TILE_ELEMENTS // block_d // _unaligned(d)
        block_t = max(1, min(next_pow2(T), cap))
    if splits is None:
        splits = 1
        if sm_count is not None and not interpret:
            splits = max(1, min(cdiv(2 * sm_count, B), cdiv(T, block_t)))
    rows = cdiv(T, splits)
    warps = SSA_WIDE_WARPS if block_d >= SSA_WIDE_BLOCK_D else NUM_WARPS
    return SSALaunch(cdiv(T, rows), rows, block_t, block_d, warps)


class SSAFusedLaunch(NamedTuple):
    programs_bwd: int  # grid of the backward: items, then weight-gradient programs
    block_t: int
    block_d: int
    block_j: int
    block_i: int
    block_tq: int


def ssa_fused_launch(B: int, T: int, d: int, *, sm_count: int | None = None,
                     interpret: bool = False) -> SSAFusedLaunch | None:
    """Geometry of the one-launch SSA kernels, or None where the batch is larger than one program
    per SM (there the op is bound by bytes, and the two-kernel path with cuBLAS for the matrix
    products moves fewer) or d > SSA_FUSED_MAX_D. ``sm_count`` None on a GPU-less machine: the
    interpreter's stand-in count."""
    sms = SSA_INTERPRET_SMS if interpret or sm_count is None else sm_count
    if B > sms or d > SSA_FUSED_MAX_D:
        return None
    block_d = max(16, next_pow2(d))
    tile = SSA_FUSED_TILE_ELEMENTS // _unaligned(d)
    block_t = max(1, min(next_pow2(T), SSA_INTERPRET_ROWS if interpret else tile // block_d))
    block_i, block_tq = 16, min(next_pow2(T), 1024)
    programs = B + 4 * cdiv(d, block_i) + cdiv(T, block_tq)
    return SSAFusedLaunch(programs, block_t, block_d, max(1, tile // block_d), block_i, block_tq)


class SSALargeLaunch(NamedTuple):
    block_t: int
    block_d: int
    block_j: int
    num_stages: int
    num_warps: int
    block_t_em: int  # rows of a program of the second backward kernel (no loop: small tiles)
    qk_stages: int  # stages of the forward's W_k loop


def ssa_large_launch(T: int, d: int, *, interpret: bool = False) -> SSALargeLaunch:
    """Geometry of the large-batch SSA kernels (``ssa_attention/triton_large.py``): tiles of up
    to 64 rows, pipelined over ``num_stages`` (the interpreter: few, large tiles)."""
    block_d = max(16, next_pow2(d))
    u = _unaligned(d)
    cap = SSA_INTERPRET_ROWS if interpret else min(SSA_LARGE_ROWS,
                                                   SSA_LARGE_TILE_ELEMENTS // block_d // u)
    block_t = max(1, min(next_pow2(T), cap))
    small = SSA_FUSED_TILE_ELEMENTS // block_d // u
    block_t_em = block_t if interpret else max(1, min(next_pow2(T), small))
    # W_k chunks: both keys' columns j0 .. j0 + BLOCK_J per step, a quarter tile together; where
    # d is not a multiple of 16, 8 columns a step, not staged (the unvectorised loads of other
    # choices spilled 4-36 bytes at d = 129 .. 511 under Triton 3.6 or 3.9)
    block_j = min(block_d, SSA_LARGE_TILE_ELEMENTS // 4 // block_d if u == 1 else 8)
    return SSALargeLaunch(block_t, block_d, block_j, SSA_LARGE_STAGES, SSA_LARGE_WARPS,
                          block_t_em, SSA_LARGE_STAGES if u == 1 else 1)


def _unaligned(d: int) -> int:
    """4 when rows of d floats are not 64-byte multiples, else 1: without the divisibility hint
    the row loads are not vectorised and take ~4x the registers, so the SSA tiles shrink 4x
    (ptxas spilled up to 1.2 KB at the full tile; none at a quarter, Triton 3.6 and 3.9)."""
    return 1 if d % 16 == 0 else 4


class LogMelLaunch(NamedTuple):
    grid: tuple[int]  # (programs,): persistent, each loops over tiles
    block_r: int  # constexpr BLOCK_R (frames per tile, halo included)
    block_f: int  # constexpr BLOCK_F
    block_m: int  # constexpr BLOCK_M
    halo: int  # constexpr HALO
    block_c: int  # constexpr BLOCK_C (filters per step of the banded sum and of the deltas)
    tiles_per_item: int  # tiles along T
    tiles: int  # tiles_per_item * B


def logmel_launch(B: int, T: int, n_mels: int, *, sm_count: int | None = None,
                  interpret: bool = False, block_rows: int | None = None,
                  block_freqs: int | None = None,
                  block_filters: int | None = None) -> LogMelLaunch:
    """Geometry of ``_logmel_delta_kernel`` for B items of T frames and n_mels bands, on a
    device with sm_count multiprocessors (None: the CPU's interpreter)."""
    block_r = block_rows or (LOGMEL_BLOCK_ROWS_INTERPRET if interpret else LOGMEL_BLOCK_ROWS)
    if block_r <= 2 * LOGMEL_HALO or block_r < 16:
        raise ValueError(f"block_rows must be >= 16 and > 2 * halo ({2 * LOGMEL_HALO}), "
                         f"got {block_r}")
    per_item = cdiv(T, block_r - 2 * LOGMEL_HALO)
    tiles = per_item * B
    block_f = block_freqs or (LOGMEL_BLOCK_FREQS_INTERPRET if interpret else LOGMEL_BLOCK_FREQS)
    block_m = max(16, next_pow2(n_mels))
    # (past 128 filters fewer programs per SM keep the scratch, 2 x 64 x BLOCK_M floats a slot,
    # in L2: 17 MB (BLOCK_M 64) or 34 MB on 132 SMs, up to 512 filters)
    per_sm = max(1, LOGMEL_PROGRAMS_PER_SM * 128 // max(128, block_m))
    slots = (LOGMEL_INTERPRET_PROGRAMS if interpret or sm_count is None else sm_count * per_sm)
    block_c = min(block_m, block_filters or (block_m if interpret else LOGMEL_BLOCK_FILTERS))
    if block_c < 1 or block_c & (block_c - 1):
        raise ValueError(f"block_filters must be a power of two, got {block_filters}")
    return LogMelLaunch((max(1, min(tiles, slots)),), block_r, block_f, block_m, LOGMEL_HALO,
                        block_c, per_item, tiles)


class L1Launch(NamedTuple):
    grid: tuple[int]
    block_k: int
    block_n: int
    block_x: int


def l1_launch(K: int, n: int, x_numel: int) -> L1Launch:
    """Geometry of ``_l1_project_kernel`` for a (K, n) weight and an x of x_numel elements."""
    block_n = max(16, next_pow2(n))
    block_k = max(1, min(next_pow2(K), L1_TILE_ELEMENTS // block_n))
    block_x = min(L1_MAX_BLOCK_X, max(16, next_pow2(x_numel)))
    return L1Launch((cdiv(K, block_k),), block_k, block_n, block_x)
