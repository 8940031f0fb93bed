"""The CUDA logmel_delta kernels' own source, run on the CPU.

``csrc/cuda/logmel_delta_tile.cuh`` holds the kernel's whole block program (FFT, mel, log,
deltas, tiling, item ends); the kernel and ``logmel_cuda_emulate.cpp`` both compile it. Here the
host compiler builds the emulation and the tests run it block by block against the float64
reference and librosa, so the kernel's arithmetic and indexing are checked without a GPU
(``pytest -m cuda_source``). Every test of the emulated program runs both programs: "tile" (the
default kernel, op ``logmel_delta``) and "regfft" (``logmel_delta_regfft_tile.cuh``: the FFT in
registers by teams of lanes with warp barriers, opt-in, op ``logmel_delta_regfft``). What only
a GPU shows (races between real threads, speed) is for compute-sanitizer and the benchmarks; the
tests at the end run the real kernels when they are built.
"""

import ctypes
import os
import re
import shlex
import subprocess
import sysconfig
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (
    librosa_logmel_delta,
    speech_like,  # (at import: a later conftest replaces the module name)
)

import ssa_fast
from ssa_fast.kernels.logmel_delta.filters import analysis_window, mel_filterbank
from ssa_fast.kernels.logmel_delta.function import CUDA_MAX_FFT, CUDA_MIN_FFT, cuda_fft_size
from ssa_fast.kernels.logmel_delta.reference import frame_count, logmel_delta_reference

ROOT = Path(__file__).resolve().parents[2]
SOURCE = Path(__file__).with_name("logmel_cuda_emulate.cpp")
cuda_source = pytest.mark.cuda_source


@pytest.fixture(scope="session")
def emu(tmp_path_factory):
    """The emulation library, compiled once per session with warnings as errors."""
    cxx = shlex.split(os.environ.get("CXX") or sysconfig.get_config_var("CXX") or "c++")[:1]
    lib = tmp_path_factory.mktemp("logmel_cuda") / "logmel_cuda_emulate.so"
    cmd = cxx + ["-std=c++17", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror",
                 f"-I{ROOT / 'csrc'}", str(SOURCE), "-o", str(lib)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stderr}"
    return ctypes.CDLL(str(lib))


P = ctypes.c_void_p


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(P)


def bank(sr=16000, n_fft=512, win_length=400, n_mels=40, fmin=0.0, fmax=None, htk=False,
         window="hamming"):
    w = analysis_window(window, win_length, n_fft).float().numpy()
    fb = mel_filterbank(sr, n_fft, n_mels, fmin, fmax, htk).float().numpy()
    return w, fb


PROGRAMS = ["tile", "regfft"]
# lanes per frame of the regfft program (n_fft / 2 = N1 x N2 points, min(N1, N2) lanes)
REGFFT_LANES = {256: 8, 512: 16, 1024: 16, 2048: 32}


def emulate(lib, x, lengths, w, fb, hop=160, center=True, amin=1e-10, tile=0, threads=256,
            reverse=False, program="tile"):
    """Run every block of the kernel's program; out starts as NaN so unwritten cells show."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    B, N = x.shape
    lengths = np.ascontiguousarray(lengths, dtype=np.int64)
    n_fft, M = w.shape[0], fb.shape[0]
    T = frame_count(N, n_fft, hop, center)
    out = np.full((B, 3, T, M), np.nan, dtype=np.float32)
    run = lib.ssa_logmel_emulate if program == "tile" else lib.ssa_logmel_regfft_emulate
    used = run(_ptr(x), ctypes.c_int64(B), ctypes.c_int64(N), _ptr(lengths),
                                  _ptr(w), n_fft, _ptr(np.ascontiguousarray(fb)), M, hop,
                                  int(center), ctypes.c_float(amin), tile, threads, int(reverse),
                                  _ptr(out))
    assert used != -2, "a team barrier reached by only some lanes of a team"
    assert used == (tile or used) and used >= 1
    return out


def reference(x, lengths, w, fb, hop=160, center=True, amin=1e-10) -> np.ndarray:
    """The float64 reference of the same float32 inputs."""
    return logmel_delta_reference(torch.from_numpy(np.asarray(x, np.float32)).double(),
                                  torch.as_tensor(lengths), torch.from_numpy(w).double(),
                                  torch.from_numpy(fb).double(), hop, center, amin).numpy()


def ragged(lengths, seed=0):
    """A padded batch of speech-like items with loud garbage past each item's end."""
    N = max(lengths)
    rng = np.random.default_rng(seed)
    x = 30.0 * rng.standard_normal((len(lengths), N))
    for i, n in enumerate(lengths):
        x[i, :n] = speech_like(n, seed=seed + i)
    return x.astype(np.float32)


def check_against_reference(out, ref, lengths, n_fft, hop, center, atol=1e-4):
    assert not np.isnan(out).any(), "the kernel left output cells unwritten"
    for i, n in enumerate(lengths):
        t = frame_count(n, n_fft, hop, center)
        assert np.count_nonzero(out[i, :, t:]) == 0, f"item {i}: non-zero frames past its end"
    err = np.abs(out - ref).max(axis=(0, 2, 3))
    assert err.max() <= atol, f"max abs error per channel {err}"


@cuda_source
@pytest.mark.parametrize("n_fft", [256, 512, 1024, 2048])
def test_fft_power_matches_numpy(emu, n_fft):
    frame = np.random.default_rng(n_fft).standard_normal(n_fft).astype(np.float32)
    power = np.empty(n_fft // 2 + 1, np.float32)
    assert emu.ssa_logmel_rfft_power(_ptr(frame), n_fft, _ptr(power)) == 0
    truth = np.abs(np.fft.rfft(frame.astype(np.float64))) ** 2
    # fp32 FFT: error ~ log2(n) ulps of the largest magnitude
    np.testing.assert_allclose(power, truth, rtol=1e-4, atol=2e-6 * truth.max())


@cuda_source
def test_unsupported_fft_size_is_refused(emu):
    frame = np.zeros(400, np.float32)
    power = np.empty(201, np.float32)
    assert emu.ssa_logmel_rfft_power(_ptr(frame), 400, _ptr(power)) == -1
    assert emu.ssa_logmel_rfft_power(_ptr(np.zeros(4096, np.float32)), 4096, _ptr(power)) == -1


def test_python_fft_range_is_the_kernels():
    """The n_fft range the backend choice reads (the log-Mel op's function.py) is the one the
    kernel's header states."""
    header = (ROOT / "csrc" / "cuda" / "logmel_delta_tile.cuh").read_text()
    found = dict(re.findall(r"constexpr int (kMinFft|kMaxFft) = (\d+);", header))
    assert {k: int(v) for k, v in found.items()} == {"kMinFft": CUDA_MIN_FFT,
                                                     "kMaxFft": CUDA_MAX_FFT}


@cuda_source
def test_python_fft_sizes_are_the_kernels(emu):
    """Every n_fft up to twice the largest: the kernel's own check (fft_size_supported) takes
    exactly the sizes the Python rule sends to it."""
    taken = []
    for n_fft in range(2, 2 * CUDA_MAX_FFT + 2):
        power = np.empty(n_fft // 2 + 1, np.float32)
        code = emu.ssa_logmel_rfft_power(_ptr(np.zeros(n_fft, np.float32)), n_fft, _ptr(power))
        assert (code == 0) == cuda_fft_size(n_fft), n_fft
        taken += [n_fft] if code == 0 else []
    assert taken == [256, 512, 1024, 2048]


# n_fft 256 .. 2048, n_mels 40 .. 128, both windows, HTK and Slaney banks, center on and off.
CASES = {
    "n256_m40": dict(sr=8000, n_fft=256, win_length=200, hop=80, n_mels=40),
    "n512_m40": dict(sr=16000, n_fft=512, win_length=400, hop=160, n_mels=40),
    "n512_m64_hann_nocenter": dict(sr=16000, n_fft=512, win_length=512, hop=128, n_mels=64,
                                   window="hann", center=False),
    "n1024_m80_htk": dict(sr=22050, n_fft=1024, win_length=551, hop=220, n_mels=80, htk=True,
                          fmin=40.0, fmax=7600.0),
    "n2048_m128": dict(sr=44100, n_fft=2048, win_length=2048, hop=441, n_mels=128),
    "n2048_m40_nocenter_hop_gt_nfft": dict(sr=16000, n_fft=2048, win_length=1600, hop=2500,
                                           n_mels=40, center=False),
}


@cuda_source
@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("name", list(CASES))
def test_ragged_batch_matches_reference(emu, name, program):
    kw = dict(CASES[name])
    hop, center = kw.pop("hop"), kw.pop("center", True)
    w, fb = bank(**kw)
    n_fft = w.shape[0]
    lengths = [int(2.3 * kw["sr"]) + 7, n_fft, n_fft + 3 * hop + 1, int(0.7 * kw["sr"])]
    if center:
        lengths.append(1)
    x = ragged(lengths, seed=len(name))
    out = emulate(emu, x, lengths, w, fb, hop, center, program=program)
    check_against_reference(out, reference(x, lengths, w, fb, hop, center), lengths, n_fft, hop,
                            center)


@cuda_source
@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("center", [True, False])
def test_matches_librosa(emu, center, program):
    y = speech_like(int(1.37 * 16000) + 3, seed=1)
    w, fb = bank()
    truth = librosa_logmel_delta(y, center=center)
    out = emulate(emu, y[None], [len(y)], w, fb, center=center, program=program)[0]
    err = np.abs(out - truth).max(axis=(1, 2))
    assert err.max() <= 1e-3, f"max abs error per channel vs librosa {err}"
    # within 2x the error of the fp32 reference chain (plus a small atol)
    ref32 = logmel_delta_reference(torch.from_numpy(y[None]).float(), None, torch.from_numpy(w),
                                   torch.from_numpy(fb), 160, center, 1e-10)[0].numpy()
    ref_err = np.abs(ref32 - truth).max(axis=(1, 2))
    assert (err <= 2 * ref_err + 2e-5).all(), f"{err} vs fp32 reference {ref_err}"


@cuda_source
@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("tile", [1, 4, 8])
def test_item_ends_at_tile_edges(emu, tile, program):
    """Items whose last frame falls just before, at and just after a tile edge, and items
    shorter than the halo: forced small tiles give the same result as the default tile, bit for
    bit (each frame's arithmetic does not depend on the tiling), and match the reference."""
    frames = sorted({1, 2, 3, 4, 5, tile - 1, tile, tile + 1, 2 * tile - 1, 2 * tile,
                     2 * tile + 1, 3 * tile + 2} - {0})
    lengths = [(f - 1) * 160 + 37 for f in frames]
    x = ragged(lengths, seed=tile)
    w, fb = bank()
    small = emulate(emu, x, lengths, w, fb, tile=tile, program=program)
    default = emulate(emu, x, lengths, w, fb, program=program)
    np.testing.assert_array_equal(small, default)
    check_against_reference(small, reference(x, lengths, w, fb), lengths, 512, 160, True)


@cuda_source
@pytest.mark.parametrize("threads, reverse", [(256, True), (96, False), (1, False), (7, True)])
def test_thread_count_and_order_do_not_matter(emu, threads, reverse):
    """Within one strided loop no iteration may read what another writes: running the emulated
    threads in another order or count must give the identical result."""
    lengths = [9000, 3001, 170]
    x = ragged(lengths, seed=3)
    w, fb = bank()
    base = emulate(emu, x, lengths, w, fb, tile=8)
    np.testing.assert_array_equal(
        emulate(emu, x, lengths, w, fb, tile=8, threads=threads, reverse=reverse), base)


@cuda_source
@pytest.mark.parametrize("n_fft", [256, 512, 1024, 2048])
@pytest.mark.parametrize("slots, reverse", [(None, True), (1, False), (1, True), (3, False),
                                            (5, True)])
def test_regfft_thread_count_and_order_do_not_matter(emu, n_fft, slots, reverse):
    """The regfft program: lanes of a team in reverse order (between team barriers), teams in
    reverse order (between block barriers), and fewer team slots per block (one team then
    transforms several frames of a group in turn) give the identical result, and it matches the
    tile program to float32 rounding."""
    sr = 16000 * n_fft // 512
    w, fb = bank(sr=sr, n_fft=n_fft, win_length=n_fft * 25 // 32, n_mels=40)
    hop = n_fft * 5 // 16
    lengths = [28 * hop + 3, 11 * hop + n_fft // 3, 2 * hop]
    x = ragged(lengths, seed=n_fft)
    base = emulate(emu, x, lengths, w, fb, hop, tile=8, program="regfft")
    threads = 256 if slots is None else slots * REGFFT_LANES[n_fft]
    np.testing.assert_array_equal(
        emulate(emu, x, lengths, w, fb, hop, tile=8, threads=threads, reverse=reverse,
                program="regfft"), base)
    first = emulate(emu, x, lengths, w, fb, hop, tile=8)
    np.testing.assert_allclose(base, first, atol=3e-5, rtol=0)


@cuda_source
@pytest.mark.parametrize("sr, n_fft, n_mels, htk", [
    (16000, 512, 40, False), (16000, 512, 128, False), (8000, 256, 40, False),
    (22050, 1024, 80, True), (44100, 2048, 128, False), (44100, 2048, 1025, False)])
def test_regfft_filters_dealt_to_lanes_by_width(emu, sr, n_fft, n_mels, htk):
    """Every filter to exactly one lane; the busiest lane within the greedy bound (the mean work
    plus the widest filter), and at the target bank (40 filters, n_fft 512) exactly the widest
    filter, where dealing round-robin gives 52 bins."""
    P = REGFFT_LANES[n_fft]
    fb = mel_filterbank(sr, n_fft, n_mels, 0.0, None, htk).float().numpy()
    nz = [np.flatnonzero(r) for r in fb]
    bands = np.array([[z[0], z[-1] + 1] if len(z) else [0, 0] for z in nz], np.int32)
    deal = np.full(P + 1 + n_mels, -1, np.int32)
    emu.ssa_logmel_regfft_deal(_ptr(bands), n_mels, P, _ptr(deal))
    start, order = deal[:P + 1], deal[P + 1:]
    assert start[0] == 0 and start[-1] == n_mels and (np.diff(start) >= 0).all()
    assert sorted(order) == list(range(n_mels))
    work = bands[:, 1] - bands[:, 0] + 1
    busiest = max(work[order[start[i]:start[i + 1]]].sum() for i in range(P))
    assert busiest <= work.sum() / P + work.max()
    if (n_fft, n_mels) == (512, 40):
        assert busiest == work.max() == 37  # 36 bins + the filter's own step


@cuda_source
def test_regfft_refuses_threads_that_split_a_team(emu):
    x = np.zeros((1, 4000), np.float32)
    w, fb = bank()
    out = np.zeros((1, 3, 26, 40), np.float32)
    for threads in (1, 8, 24):  # 16 lanes per frame at n_fft 512
        assert emu.ssa_logmel_regfft_emulate(
            _ptr(x), ctypes.c_int64(1), ctypes.c_int64(4000), _ptr(np.array([4000], np.int64)),
            _ptr(w), 512, _ptr(np.ascontiguousarray(fb)), 40, 160, 1, ctypes.c_float(1e-10), 0,
            threads, 0, _ptr(out)) == -3


@cuda_source
@pytest.mark.parametrize("program", PROGRAMS)
def test_amin_floor_and_silence(emu, program):
    """Exact silence: every mel energy is below amin, static = ln(amin), deltas exactly 0."""
    w, fb = bank()
    x = np.zeros((2, 4000), np.float32)
    out = emulate(emu, x, [4000, 1234], w, fb, amin=1e-5, program=program)
    t = frame_count(1234, 512, 160, True)
    np.testing.assert_allclose(out[0, 0], np.log(1e-5), rtol=1e-6)
    np.testing.assert_array_equal(out[0, 1:], 0.0)
    assert np.count_nonzero(out[1, :, t:]) == 0


@cuda_source
@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_samples_never_give_finite_wrong_features(emu, bad, program):
    """The GPU does not read sample values back (no synchronisation), so a NaN / Inf sample
    reaches the kernel: the frames it touches must come out non-finite (not log(amin)) and every
    finite value must equal what the clean signal gives."""
    w, fb = bank()
    lengths = [16000, 12000]
    x = ragged(lengths)
    clean = emulate(emu, x, lengths, w, fb, program=program)
    x = x.copy()
    x[0, 8000] = bad
    out = emulate(emu, x, lengths, w, fb, program=program)
    finite = np.isfinite(out)
    t = 8000 // 160
    assert not finite[0, 0, t - 1:t + 2].any() and not finite[0, 2, t - 5:t + 6].any()
    assert finite[1].all() and np.array_equal(out[finite], clean[finite])


@cuda_source
@pytest.mark.parametrize("n_fft, n_mels", [(256, 40), (512, 40), (512, 128), (1024, 80),
                                           (2048, 128), (2048, 1025)])
def test_launch_plan_fits_shared_memory(emu, n_fft, n_mels):
    res = (ctypes.c_int64 * 4)()
    limit = 227 * 1024  # H100 opt-in maximum per block (A100: 163 KB)
    emu.ssa_logmel_plan(n_fft, n_mels, 160, 1, 160000, limit, res)
    tile, group, smem, T = list(res)
    assert group * n_fft == 4096 and T == 1001
    assert 1 <= tile <= 64 and smem <= limit
    if n_mels <= 128:  # the common sizes: several blocks per SM
        assert tile >= 8 and smem <= 64 * 1024, (tile, smem)


@cuda_source
@pytest.mark.parametrize("n_fft, n_mels, hop, tile_at_least, smem_at_most", [
    (256, 40, 80, 64, 64), (512, 40, 160, 64, 64), (512, 128, 160, 32, 76),
    (1024, 80, 256, 8, 227), (2048, 128, 441, 32, 227), (2048, 1025, 512, 8, 227),
    (2048, 40, 2500, 8, 227)])
def test_regfft_launch_plan_fits_shared_memory(emu, n_fft, n_mels, hop, tile_at_least,
                                               smem_at_most):
    """One frame per team of lanes (256 threads a block); the target shape (n_fft 512, 40
    filters) at tile 64 within 64 KB (3 blocks of 256 threads per SM on an H100). n_fft 1024
    and 2048 transpose 16 / 8 frames of 4.1 / 8.3 KB at once: 100-200 KB, 1-2 blocks per SM."""
    res = (ctypes.c_int64 * 4)()
    limit = 227 * 1024
    emu.ssa_logmel_regfft_plan(n_fft, n_mels, hop, 1, 160000, limit, res)
    tile, group, smem, T = list(res)
    assert group == 256 // REGFFT_LANES[n_fft] and T == 1 + 160000 // hop
    assert tile_at_least <= tile <= 64 and smem <= smem_at_most * 1024, (tile, smem)


# -- the compiled CUDA kernel (GPU machines with the extension built for CUDA) -----------------


def _cuda_kernel_built() -> bool:
    # (the op named: without it "cuda" is never listed, and these tests skipped on every GPU)
    return torch.cuda.is_available() and "cuda" in ssa_fast.available_backends("cuda",
                                                                                "logmel_delta")


needs_cuda_kernel = pytest.mark.skipif(not _cuda_kernel_built(),
                                       reason="needs a GPU and the extension built with CUDA")


def _gpu_op(program):
    return (torch.ops.ssa_fast.logmel_delta if program == "tile"
            else torch.ops.ssa_fast.logmel_delta_regfft)


@needs_cuda_kernel
@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("name", list(CASES))
def test_gpu_kernel_matches_emulation(emu, name, program):
    kw = dict(CASES[name])
    hop, center = kw.pop("hop"), kw.pop("center", True)
    w, fb = bank(**kw)
    n_fft = w.shape[0]
    lengths = [int(2.3 * kw["sr"]) + 7, n_fft, n_fft + 3 * hop + 1]
    x = ragged(lengths, seed=5)
    gpu = _gpu_op(program)(
        torch.from_numpy(x).cuda(), torch.tensor(lengths).cuda(), torch.from_numpy(w).cuda(),
        torch.from_numpy(fb).cuda(), hop, center, 1e-10).cpu().numpy()
    np.testing.assert_allclose(
        gpu, emulate(emu, x, lengths, w, fb, hop, center, program=program), atol=2e-5, rtol=0)


@needs_cuda_kernel
@pytest.mark.parametrize("program", PROGRAMS)
def test_gpu_kernel_non_finite_and_librosa(emu, program):
    """On the GPU as in the emulation: a NaN sample makes exactly the same cells non-finite, the
    finite cells agree, and a clean utterance matches librosa within 1e-3."""
    w, fb = bank()
    lengths = [16000, 12000]
    x = ragged(lengths)
    x[0, 8000] = np.nan
    gpu = _gpu_op(program)(torch.from_numpy(x).cuda(), torch.tensor(lengths).cuda(),
                           torch.from_numpy(w).cuda(), torch.from_numpy(fb).cuda(), 160, True,
                           1e-10).cpu().numpy()
    emulated = emulate(emu, x, lengths, w, fb, program=program)
    np.testing.assert_array_equal(np.isfinite(gpu), np.isfinite(emulated))
    np.testing.assert_allclose(gpu, emulated, atol=2e-5, rtol=0)  # (NaN where both are NaN)
    y = speech_like(int(1.37 * 16000) + 3, seed=1)
    out = _gpu_op(program)(torch.from_numpy(y[None]).cuda(), torch.tensor([len(y)]).cuda(),
                           torch.from_numpy(w).cuda(), torch.from_numpy(fb).cuda(), 160, True,
                           1e-10)[0].cpu().numpy()
    assert np.abs(out - librosa_logmel_delta(y)).max() <= 1e-3


@needs_cuda_kernel
@pytest.mark.parametrize("program", PROGRAMS)
def test_gpu_opcheck(program):
    x = torch.randn(2, 3000, device="cuda")
    w, fb = (torch.from_numpy(a).cuda() for a in bank())
    torch.library.opcheck(_gpu_op(program),
                          (x, torch.tensor([3000, 1700], device="cuda"), w, fb, 160, True, 1e-10))


@needs_cuda_kernel
def test_gpu_regfft_is_selected_per_call(monkeypatch):
    """SSA_FAST_LOGMEL_REGFFT=1 routes backend="cuda" to the regfft kernel, read at each call."""
    x = ragged([9000, 5000], seed=2)
    xc = torch.from_numpy(x).cuda()
    w, fb = (torch.from_numpy(a).cuda() for a in bank())
    lengths = torch.tensor([9000, 5000], device="cuda")
    ops = {p: _gpu_op(p)(xc, lengths, w, fb, 160, True, 1e-10) for p in PROGRAMS}
    assert not torch.equal(ops["tile"], ops["regfft"])  # (float32 rounding differs)
    for flag, program in (("1", "regfft"), ("0", "tile")):
        monkeypatch.setenv("SSA_FAST_LOGMEL_REGFFT", flag)
        out = ssa_fast.logmel_delta(xc, lengths=lengths, backend="cuda")
        torch.testing.assert_close(out, ops[program], atol=0, rtol=0)


@needs_cuda_kernel
def test_gpu_other_fft_sizes_take_the_triton_path():
    x = torch.randn(2, 8000, device="cuda")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = ssa_fast.logmel_delta(x, n_fft=400, win_length=400, backend="cuda")
    assert any("n_fft" in str(c.message) for c in caught)
    ref = ssa_fast.logmel_delta(x, n_fft=400, win_length=400, backend="reference")
    torch.testing.assert_close(out, ref, atol=1e-3, rtol=0)


def test_regfft_flag_leaves_cpu_calls_alone(monkeypatch):
    """The flag picks between the CUDA kernels only: CPU calls keep the C++ kernel (the regfft op
    has no CPU kernel), and the flag is read at each call."""
    from ssa_fast.kernels.logmel_delta import native

    if "cpp" not in ssa_fast.available_backends("cpu"):
        pytest.skip("the C++ extension is not built")
    x = torch.from_numpy(ragged([6000, 4000], seed=4))
    base = ssa_fast.logmel_delta(x, backend="cpp")
    for flag, on in (("1", True), ("0", False), ("", False), ("yes", True)):
        monkeypatch.setenv(native.REGFFT_ENV, flag)
        assert native.regfft_requested() is on
        torch.testing.assert_close(ssa_fast.logmel_delta(x, backend="cpp"), base, atol=0, rtol=0)
    with pytest.raises(NotImplementedError, match="logmel_delta_regfft"):
        torch.ops.ssa_fast.logmel_delta_regfft(x, torch.tensor([6000, 4000]),
                                               *(torch.from_numpy(a) for a in bank()), 160, True,
                                               1e-10)


def test_automatic_logmel_choice_on_cuda():
    """The CUDA kernel first where built and it takes the n_fft; else Triton runs short log-Mel
    batches and the reference long ones (the crossing measured on an H200); the policy (the
    candidates before availability), whatever this machine has."""
    from ssa_fast import _backend
    from ssa_fast.kernels.logmel_delta.function import KERNELS, TRITON_MAX_SAMPLES
    from ssa_fast.kernels.ssa_attention.function import CORE

    cuda, n = torch.device("cuda"), TRITON_MAX_SAMPLES

    def order(rules, size, device=cuda, **call):
        return _backend.automatic_candidates(rules, device, size, **call)

    assert order(KERNELS, 48000, n_fft=512) == ("cuda", "triton")
    assert order(KERNELS, 48000, n_fft=400) == ("triton",)  # the kernel's FFT does not take it
    assert order(KERNELS, n, n_fft=400) == ("triton",)
    assert order(KERNELS, n + 1, n_fft=400) == ()  # the reference
    assert order(KERNELS, n + 1, n_fft=512) == ("cuda",)
    assert order(CORE, None) == ("triton",)  # (no CUDA kernel in its table)
    assert order(KERNELS, n + 1, torch.device("cpu"), n_fft=512) == ("cpp",)


def test_cuda_backend_is_per_op_and_explicit():
    """backend="cuda" names the fused kernel: the automatic choice on CUDA where the extension
    has it, listed only for ops that have one, and a clear error where it cannot run."""
    from ssa_fast import _backend

    auto = _backend.resolve("logmel_delta", torch.device("cuda"))
    assert auto == ("cuda" if _cuda_kernel_built() else
                    "triton" if "triton" in ssa_fast.available_backends("cuda") else "reference")
    assert _backend.resolve("ssa_attention", torch.device("cuda")) != "cuda"  # it has none
    assert "cuda" not in ssa_fast.available_backends("cuda")  # without an op: not every op has it
    assert "cuda" not in ssa_fast.available_backends("cpu", "logmel_delta")
    with pytest.raises(_backend.BackendUnavailableError, match="cuda"):
        ssa_fast.logmel_delta(torch.randn(4000), backend="cuda")
    with pytest.raises(_backend.BackendUnavailableError, match="no CUDA kernel for ssa_attention"):
        _backend.resolve("ssa_attention", torch.device("cuda"), "cuda")
