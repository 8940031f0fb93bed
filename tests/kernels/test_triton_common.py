"""The launch geometry shared by the Triton launchers, and the device guard of every launcher."""

import pytest
import torch

import ssa_fast
from ssa_fast.kernels import _triton_common as tc


@pytest.mark.parametrize("d, block_d", [(1, 16), (16, 16), (64, 64), (65, 128), (256, 256),
                                        (511, 512), (512, 512)])
def test_ssa_block_d_and_tile_size(d, block_d):
    launch = tc.ssa_launch(4, 150, d)
    assert launch.block_d == block_d
    assert launch.block_t * block_d <= tc.SSA_TILE_ELEMENTS and launch.block_t >= 1
    assert launch.splits == 1  # no SM count: one slice per item
    assert tc.ssa_launch(4, 150, d, interpret=True).block_t == 256


@pytest.mark.parametrize("B, T, sms", [(1, 150, 132), (40, 150, 132), (512, 150, 132),
                                       (2, 7, 132), (3, 1000, 80)])
def test_ssa_splits_fill_the_device_and_leave_no_slice_empty(B, T, sms):
    launch = tc.ssa_launch(B, T, 256, sm_count=sms)
    assert 1 <= launch.splits <= tc.cdiv(T, launch.block_t)
    assert (launch.splits - 1) * launch.rows_per_split < T <= launch.splits * launch.rows_per_split
    if launch.splits > 1:
        assert B * launch.splits <= 2 * sms + B  # about two waves, not more
    assert tc.ssa_launch(B, T, 256, sm_count=sms, interpret=True).splits == 1


@pytest.mark.parametrize("n_mels, block_m, per_sm", [(40, 64, 4), (64, 64, 4), (80, 128, 4),
                                                     (128, 128, 4), (200, 256, 2), (300, 512, 1)])
def test_logmel_geometry(n_mels, block_m, per_sm):
    launch = tc.logmel_launch(3, 301, n_mels, sm_count=132)
    assert (launch.block_r, launch.block_f, launch.block_m, launch.halo, launch.block_c) == (
        tc.LOGMEL_BLOCK_ROWS, tc.LOGMEL_BLOCK_FREQS, block_m, tc.LOGMEL_HALO,
        tc.LOGMEL_BLOCK_FILTERS)
    assert block_m % launch.block_c == 0  # (the kernel's filter steps never pass BLOCK_M)
    kept = launch.block_r - 2 * launch.halo
    per_item = tc.cdiv(301, kept)
    assert (launch.tiles_per_item, launch.tiles) == (per_item, 3 * per_item)
    assert (per_item - 1) * kept < 301
    assert launch.grid == (3 * per_item,)  # fewer tiles than slots: one program per tile
    # persistent: a few programs per multiprocessor (fewer for wide tiles), each looping
    big = tc.logmel_launch(1024, 1001, n_mels, sm_count=132)
    assert big.grid == (132 * per_sm,)
    assert big.grid[0] * 2 * launch.block_r * block_m * 4 <= 34.7e6  # the scratch
    assert big.tiles == 1024 * tc.cdiv(1001, kept)
    interp = tc.logmel_launch(3, 301, n_mels, interpret=True)
    assert interp.block_r == tc.LOGMEL_BLOCK_ROWS_INTERPRET and interp.block_c == block_m
    assert interp.grid == (tc.LOGMEL_INTERPRET_PROGRAMS,) < (interp.tiles,)  # the loop runs
    with pytest.raises(ValueError, match="block_rows"):
        tc.logmel_launch(3, 301, n_mels, block_rows=8)
    for bad in (24, -16):  # (a step of filters must divide BLOCK_M)
        with pytest.raises(ValueError, match="block_filters must be a power of two"):
            tc.logmel_launch(3, 301, n_mels, block_filters=bad)


def test_l1_geometry():
    launch = tc.l1_launch(4, 128, 40 * 128)
    assert (launch.block_n, launch.block_k, launch.block_x, launch.grid) == (128, 4, 4096, (1,))
    big = tc.l1_launch(1000, 128, 7)
    assert big.block_k * big.block_n <= tc.L1_TILE_ELEMENTS and big.block_x == 16
    assert big.grid[0] * big.block_k >= 1000


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_launchers_run_on_the_tensors_device():
    """Tensors on cuda:1 while cuda:0 is current: every Triton launcher runs on cuda:1."""
    torch.cuda.set_device(0)
    g = torch.Generator().manual_seed(0)
    x = 0.3 * torch.randn(2, 4000, generator=g)
    ref = ssa_fast.logmel_delta(x, backend="reference")
    out = ssa_fast.logmel_delta(x.to("cuda:1"), backend="triton")
    assert out.device == torch.device("cuda:1")
    torch.testing.assert_close(out.cpu(), ref, atol=1e-3, rtol=0)
    h = [torch.randn(2, 9, 16, generator=g) for _ in range(2)]
    ws = [torch.randn(9, generator=g)] + [torch.randn(16, 16, generator=g) / 4 for _ in range(4)]
    c_ref, _ = ssa_fast.ssa_attention(*h, *ws, backend="reference")
    c, _ = ssa_fast.ssa_attention(*[t.to("cuda:1") for t in (*h, *ws)], backend="triton")
    torch.testing.assert_close(c.cpu(), c_ref, rtol=1e-4, atol=1e-5)
    W, z = torch.randn(4, 32, generator=g), torch.randn(6, 32, generator=g)
    W1 = W.to("cuda:1")
    ssa_fast.l1_project_(W1, z.to("cuda:1"), backend="triton")
    torch.testing.assert_close(W1.cpu(), ssa_fast.l1_project_(W, z, backend="reference"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_logmel_triton_path_does_not_synchronise():
    """From host lengths to features, the triton path of logmel_delta never waits for the GPU
    (torch's sync debug mode turns any synchronisation into an error)."""
    from ssa_fast.kernels.logmel_delta import _validate_lengths
    from ssa_fast.kernels.logmel_delta.filters import analysis_window, mel_filterbank
    from ssa_fast.kernels.logmel_delta.function import logmel_delta_apply

    x = 0.3 * torch.randn(3, 8000, device="cuda")
    window = analysis_window("hamming", 400, 512).float().cuda()
    fb = mel_filterbank(16000, 512, 40).float().cuda()
    logmel_delta_apply("triton", x, None, window, fb, 160, True, 1e-10)  # compile outside
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        lengths = _validate_lengths([8000, 5000, 400], x, 512, True)
        out = logmel_delta_apply("triton", x, lengths, window, fb, 160, True, 1e-10)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    ref = logmel_delta_apply("reference", x.cpu(), lengths.cpu(), window.cpu(), fb.cpu(), 160,
                             True, 1e-10)
    torch.testing.assert_close(out.cpu(), ref, atol=2e-3, rtol=0)


@pytest.mark.parametrize("d", [64, 100, 256, 257, 512])
def test_ssa_unaligned_rows_take_a_quarter_tile(d):
    """Rows of d floats that are not 64-byte multiples load unvectorised (~4x the registers):
    both SSA paths quarter their tiles there, which removed ptxas's spills."""
    u = 1 if d % 16 == 0 else 4
    block_d = tc.next_pow2(d)
    assert tc.ssa_launch(4096, 150, d).block_t == min(256, tc.SSA_TILE_ELEMENTS // block_d // u)
    fused = tc.ssa_fused_launch(40, 150, d, sm_count=132)
    assert fused.block_t == min(256, tc.SSA_FUSED_TILE_ELEMENTS // block_d // u)
    assert fused.block_j * block_d * u == tc.SSA_FUSED_TILE_ELEMENTS


@pytest.mark.parametrize("B, d, sms, fused", [(40, 256, 132, True), (132, 256, 132, True),
                                              (133, 256, 132, False), (4096, 256, 132, False),
                                              (40, 513, 132, False), (4, 16, None, True),
                                              (5, 16, None, False)])
def test_ssa_one_launch_path_takes_batches_of_one_wave(B, d, sms, fused):
    """The one-launch kernels take batches of at most one program per SM (the interpreter counts
    as SSA_INTERPRET_SMS), d <= 512; the backward's grid is the items, 4 row blocks of 16 per
    weight matrix and the dw_q blocks."""
    launch = tc.ssa_fused_launch(B, 150, d, sm_count=sms)
    assert (launch is not None) == fused
    if launch is not None:
        assert launch.programs_bwd == B + 4 * tc.cdiv(d, 16) + 1


@pytest.mark.parametrize("d", [256, 511, 512])
def test_ssa_launchers_pass_the_geometry_warps_and_register_ceiling(monkeypatch, d):
    """What ptxas compiles is decided by the launch: the two-kernel SSA kernels run 8 warps at
    BLOCK_D = 512 (4 below), the one-launch kernels 8 warps under a ceiling of 128 registers
    (without the ceiling ptxas spilled at 80; benchmarks/triton_aot.py shows the reports)."""
    pytest.importorskip("triton")
    from ssa_fast.kernels.ssa_attention import triton as ssa

    launches = {}

    class Recorder:
        def __init__(self, name):
            self.name = name

        def __getitem__(self, grid):
            return lambda *args, **kwargs: launches.setdefault(self.name, kwargs)

    for name in ("_ssa_fwd_kernel", "_ssa_bwd_kernel", "_ssa_fused_fwd_kernel",
                 "_ssa_fused_bwd_kernel"):
        monkeypatch.setattr(ssa, name, Recorder(name))
    B, T = 6, 37
    h, v, a = torch.empty(B, T, d), torch.empty(B, d), torch.empty(B, 2 * T)
    ssa.ssa_core_fwd_triton(h, h, v, v, 0.1)
    ssa.ssa_core_bwd_triton(h, h, v, v, a, v, v, v, v, a, 0.1)
    weights = [torch.empty(T)] + [torch.empty(d, d) for _ in range(4)]
    c, alpha, saved = ssa.ssa_fused_fwd_triton(h, h, *weights, 0.1, False)
    ssa.ssa_fused_bwd_triton(h, h, *weights, saved, alpha, torch.empty_like(c), None, 0.1, False)
    warps = 8 if d > 256 else 4
    assert tc.ssa_launch(B, T, d).num_warps == warps
    for name in ("_ssa_fwd_kernel", "_ssa_bwd_kernel"):
        assert launches[name]["num_warps"] == warps and "maxnreg" not in launches[name], name
    for name in ("_ssa_fused_fwd_kernel", "_ssa_fused_bwd_kernel"):
        assert launches[name]["num_warps"] == tc.SSA_FUSED_WARPS == 8, name
        assert launches[name]["maxnreg"] == tc.SSA_FUSED_MAX_REGISTERS == 128, name


def test_logmel_launcher_passes_its_geometry_and_register_ceiling(monkeypatch):
    """The Triton log-Mel launch: 4 warps under a ceiling of 128 registers (without it Triton
    3.9's ptxas spilled 4 bytes at 72-80), the grid and constexprs of logmel_launch, and a
    scratch slot and a bands row per program."""
    pytest.importorskip("triton")
    from ssa_fast.kernels.logmel_delta import triton as lm
    from ssa_fast.kernels.logmel_delta.filters import analysis_window, mel_filterbank

    launches = []

    class Recorder:
        def __getitem__(self, grid):
            return lambda *args, **kwargs: launches.append((grid, args, kwargs))

    monkeypatch.setattr(lm, "_logmel_delta_kernel", Recorder())
    monkeypatch.setattr(lm, "triton_interpret", lambda: False)
    monkeypatch.setattr(lm, "sm_count", lambda t: 3)
    fb = mel_filterbank(16000, 512, 40).float()
    out = lm.logmel_delta_triton(torch.zeros(5, 48000), None,
                                 analysis_window("hamming", 400, 512).float(), fb, 160, True,
                                 1e-10)
    assert out.shape == (5, 3, 301, 40)
    (grid, args, kwargs), = launches
    launch = tc.logmel_launch(5, 301, 40, sm_count=3)
    assert grid == launch.grid == (3 * tc.LOGMEL_PROGRAMS_PER_SM,) and launch.tiles == 5 * 6
    assert kwargs["num_warps"] == tc.NUM_WARPS == 4
    assert kwargs["maxnreg"] == tc.LOGMEL_MAX_REGISTERS == 128
    assert (kwargs["BLOCK_R"], kwargs["BLOCK_F"], kwargs["BLOCK_M"], kwargs["BLOCK_C"],
            kwargs["HALO"]) == (64, 16, 64, 16, 4)
    spec, _, _, _, work, bands = args[:6]
    assert spec.dtype == torch.int64 and spec.shape == (5, 301, 257)  # the complex64 bits
    assert work.shape == (grid[0], 2, 64, 64) and bands.shape == (grid[0], 2, 64)
    assert args[10:12] == (launch.tiles, launch.tiles_per_item)
