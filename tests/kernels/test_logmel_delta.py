"""logmel_delta: every backend against librosa (the ground truth) and against the reference."""

import numpy as np
import pytest
import torch
from helpers import backends_for_tests, device_for, librosa_logmel_delta, noise, speech_like

import ssa_fast
from ssa_fast.kernels.logmel_delta import frame_count

SPEC_ATOL = 1e-3  # design.md section 2: max abs error in the log domain, fp32 paths


@pytest.fixture(params=backends_for_tests("logmel_delta"))
def backend(request):
    """Every backend of this op, the CUDA kernel included where it is built."""
    return request.param

PARAMS = {
    "default": {},
    "htk": {"htk": True},
    "mels64": {"n_mels": 64},
    "mels80_fmin_fmax": {"n_mels": 80, "fmin": 40.0, "fmax": 7600.0},
    "center_false": {"center": False},
    "hann": {"window": "hann"},
    "sr22050": {"sample_rate": 22050, "n_fft": 1024, "win_length": 551, "hop_length": 220},
}


def run(x, backend, dtype=torch.float32, device=None, **kw):
    t = torch.as_tensor(x, dtype=dtype, device=device or device_for(backend))
    return ssa_fast.logmel_delta(t, backend=backend, **kw)


def errors(out: torch.Tensor, truth: np.ndarray) -> np.ndarray:
    """Max abs error per channel (static, delta, delta-delta)."""
    return np.abs(out.detach().cpu().double().numpy() - truth).max(axis=(-2, -1))


@pytest.mark.parametrize("signal", ["speech", "noise"])
@pytest.mark.parametrize("name", list(PARAMS))
def test_matches_librosa(backend, name, signal):
    kw = PARAMS[name]
    sr = kw.get("sample_rate", 16000)
    n = int(1.37 * sr) + 3  # odd length, not a multiple of the hop
    y = speech_like(n, sr, seed=1) if signal == "speech" else noise(n, seed=2)
    truth = librosa_logmel_delta(y, **kw)
    out = run(y, backend, **kw)
    assert out.shape == truth.shape
    err = errors(out, truth)
    assert err.max() <= SPEC_ATOL, f"{backend}: max abs error per channel {err}"
    # Habit 2: within 2x the error of the reference run in the same precision (plus a small atol),
    # on the same device: cuFFT's float32 rounding differs from the CPU FFT's, so a CUDA backend
    # is held to the float32 reference run through cuFFT, not to the CPU's error budget.
    ref_err = errors(run(y, "reference", device=device_for(backend), **kw), truth)
    assert (err <= 2 * ref_err + 2e-5).all(), f"{backend}: {err} vs reference fp32 {ref_err}"


@pytest.mark.parametrize("n", [1, 100, 159, 160, 511, 512, 513, 4799, 16001])
def test_short_and_odd_lengths(backend, n):
    y = speech_like(n, seed=n)
    out = run(y, backend)
    truth = librosa_logmel_delta(y)
    assert out.shape == (3, 1 + n // 160, 40)
    assert errors(out, truth).max() <= SPEC_ATOL


@pytest.mark.parametrize("n", [512, 513, 671, 672, 5000])
def test_center_false_lengths(backend, n):
    y = noise(n, seed=n)
    out = run(y, backend, center=False)
    truth = librosa_logmel_delta(y, center=False)
    assert out.shape == truth.shape == (3, 1 + (n - 512) // 160, 40)
    assert errors(out, truth).max() <= SPEC_ATOL


def test_float64_matches_librosa_closely():
    """The float64 paths agree with librosa to rounding, not just to the fp32 bar."""
    y = speech_like(24001, seed=3)
    truth = librosa_logmel_delta(y)
    for b in ("reference", "cpp"):
        assert errors(run(y, b, dtype=torch.float64), truth).max() < 1e-6, b


# Frame counts around the Triton tile sizes (56 frames per 64-row tile, 248 per 256-row tile)
# and the C++ chunk size (256 frames).
@pytest.mark.parametrize("frames", [1, 2, 5, 55, 56, 57, 247, 248, 249, 255, 256, 257, 262])
def test_frame_counts_at_block_edges(backend, frames):
    n = (frames - 1) * 160 + 37
    y = speech_like(n, seed=frames)
    out = run(y, backend)
    ref = run(y, "reference", dtype=torch.float64)
    assert out.shape[1] == frames == frame_count(n, 512, 160, True)
    assert (out.cpu().double() - ref).abs().max() <= 1e-4


def test_batch_equals_stacked_items(backend):
    ys = [speech_like(20011, seed=s) for s in range(3)] + [noise(20011, seed=9)]
    batch = run(np.stack(ys), backend)
    single = torch.stack([run(y, backend) for y in ys])
    assert batch.shape == (4, 3, 126, 40)
    torch.testing.assert_close(batch, single, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("center", [True, False])
def test_ragged_batch_with_lengths(backend, center):
    """Each item of a padded batch equals that item alone; frames past its end are zero; the
    padding's content (here: loud noise) never leaks in."""
    lens = [30001, 513, 9600, 19041, 1]
    if not center:
        lens = [30001, 513, 9600, 19041, 700]
    N = max(lens)
    wave = noise(len(lens) * N, seed=5).reshape(len(lens), N) * 30.0  # garbage beyond lengths
    items = [speech_like(n, seed=i) for i, n in enumerate(lens)]
    for i, item in enumerate(items):
        wave[i, : len(item)] = item
    x = torch.tensor(wave, dtype=torch.float32, device=device_for(backend))
    out, flens = ssa_fast.logmel_delta(x, lengths=torch.tensor(lens), backend=backend,
                                       center=center)
    T = frame_count(N, 512, 160, center)
    assert out.shape == (len(lens), 3, T, 40)
    for i, item in enumerate(items):
        t = frame_count(len(item), 512, 160, center)
        assert int(flens[i]) == t
        alone = run(item, backend, center=center)
        torch.testing.assert_close(out[i, :, :t], alone, atol=1e-5, rtol=1e-5)
        assert torch.count_nonzero(out[i, :, t:]) == 0
        assert errors(out[i, :, :t], librosa_logmel_delta(item, center=center)).max() <= SPEC_ATOL


@pytest.mark.parametrize("n_fft, win_length, hop_length", [(511, 400, 160), (301, 301, 80),
                                                         (257, 200, 64)])
def test_odd_n_fft_matches_librosa_in_frames_and_values(backend, n_fft, win_length, hop_length):
    """An odd n_fft: the mel bank at the FFT's own bin frequencies (k sr / n_fft, which end
    below sr / 2) and one frame fewer than 1 + N // hop where the hop divides N (centred, the
    padded signal is n_fft - 1 samples longer, as librosa and torch.stft count), alone and as
    items of a ragged batch."""
    if backend == "cuda":
        pytest.skip("the CUDA kernel takes n_fft a power of two (the automatic choice passes "
                    "other sizes to Triton)")
    kw = {"n_fft": n_fft, "win_length": win_length, "hop_length": hop_length}
    lens = [100 * hop_length, 37 * hop_length + 1, 3 * hop_length]
    items = [speech_like(n, seed=i) for i, n in enumerate(lens)]
    for item in items:
        truth = librosa_logmel_delta(item, **kw)
        out = run(item, backend, **kw)
        assert out.shape == truth.shape == (3, frame_count(len(item), n_fft, hop_length, True),
                                            40)
        assert errors(out, truth).max() <= SPEC_ATOL, backend
    wave = np.zeros((len(lens), max(lens)), np.float32)
    for i, item in enumerate(items):
        wave[i, :len(item)] = item
    out, flens = ssa_fast.logmel_delta(torch.tensor(wave, device=device_for(backend)),
                                       lengths=torch.tensor(lens), backend=backend, **kw)
    for i, item in enumerate(items):
        t = int(flens[i])
        assert t == 1 + (lens[i] - 1) // hop_length
        assert errors(out[i, :, :t], librosa_logmel_delta(item, **kw)).max() <= SPEC_ATOL


def test_lengths_equal_to_full_batch_is_unchanged(backend):
    y = np.stack([speech_like(8000, seed=1), noise(8000, seed=1)])
    plain = run(y, backend)
    with_lengths, _ = ssa_fast.logmel_delta(
        torch.tensor(y, dtype=torch.float32, device=device_for(backend)),
        lengths=[8000, 8000], backend=backend)
    torch.testing.assert_close(plain, with_lengths, atol=1e-6, rtol=1e-6)


def test_custom_window_tensor(backend):
    y = speech_like(9001, seed=4)
    w = torch.kaiser_window(400, periodic=True, beta=8.0, dtype=torch.float64)
    out = run(y, backend, window=w.float())
    ref = run(y, "reference", dtype=torch.float64, window=w)
    assert (out.cpu().double() - ref).abs().max() <= 1e-4


def test_a_window_that_requires_grad_and_a_flag_that_is_no_bool_are_refused():
    """A learnable window tensor got no gradient (detached, every backend), and a config flag
    given as the string "False" read as true (HTK features): both said in one line now."""
    from ssa_fast.features import FeatureConfig

    w = torch.hann_window(400, dtype=torch.float64).requires_grad_()
    with pytest.raises(ValueError, match="window: a tensor that requires grad gets no gradient"):
        ssa_fast.logmel_delta(torch.randn(4000), window=w)
    assert ssa_fast.logmel_delta(torch.randn(4000), window=w.detach()).shape[-1] == 40
    for name in ("center", "htk"):
        with pytest.raises(ValueError, match=f"{name} must be True or False, got 'False'"):
            FeatureConfig(**{name: "False"})
        assert getattr(FeatureConfig(**{name: np.bool_(False)}), name) is False


def test_silence_is_finite_floor(backend):
    out = run(np.zeros(4000), backend)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0].cpu(), torch.full_like(out[0].cpu(), float(np.log(1e-10))))
    # every backend's deltas are explicit differences, which cancel exactly
    assert out[1:].abs().max() == 0.0


def test_gradcheck_through_cpp_forward():
    """The fast forward pairs with the reference backward: gradcheck compares the two."""
    x = torch.tensor(speech_like(700, seed=7), dtype=torch.float64, requires_grad=True)
    kw = dict(n_fft=64, win_length=48, hop_length=16, n_mels=6, backend="cpp")
    assert torch.autograd.gradcheck(lambda t: ssa_fast.logmel_delta(t, **kw), (x,), atol=1e-6)


def test_gradient_matches_reference(backend):
    dev = device_for(backend)
    y = torch.tensor(speech_like(3000, seed=8), dtype=torch.float32, device=dev)
    g = torch.randn(3, 19, 40, device=dev)
    grads = []
    for b in (backend, "reference"):
        x = y.clone().requires_grad_(True)
        (ssa_fast.logmel_delta(x, backend=b) * g).sum().backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-4, rtol=1e-4)


def test_a_gradient_penalty_through_every_backend_is_the_references(backend):
    """A backward with create_graph=True (a gradient penalty on the waveform) differentiates
    the gradient again: every backend's backward is the reference chain's gradient, but it was
    computed detached, so the penalty counted as a constant (its gradient ~100x too small, no
    warning). Now it is differentiable, and equal to the reference's."""
    dev = device_for(backend)
    dtype = torch.float32 if backend == "triton" else torch.float64
    y = torch.tensor(speech_like(1500, seed=9), dtype=dtype, device=dev)
    kw = dict(n_fft=128, win_length=96, hop_length=32, n_mels=8)
    grads = []
    for b in (backend, "reference"):
        x = y.clone().requires_grad_(True)
        f = ssa_fast.logmel_delta(x, backend=b, **kw)
        (g,) = torch.autograd.grad(f.mean(), x, create_graph=True)
        assert g.requires_grad, b
        (f.mean() + 1e3 * g.square().sum()).backward()
        grads.append(x.grad)
    tol = 1e-4 if dtype == torch.float32 else 1e-9
    torch.testing.assert_close(grads[0], grads[1], atol=tol * grads[1].abs().max(), rtol=tol)


def test_cpp_op_under_torch_compile():
    from ssa_fast.kernels.logmel_delta.filters import analysis_window, mel_filterbank

    x = torch.tensor(np.stack([speech_like(6001, seed=2), noise(6001)]), dtype=torch.float32)
    win = analysis_window("hamming", 400, 512).float()
    fb = mel_filterbank(16000, 512, 40).float()
    lens = torch.tensor([6001, 3000])

    def features(t):  # the op inside a graph with work before and after it
        y = torch.ops.ssa_fast.logmel_delta(t * 0.5, lens, win, fb, 160, True, 1e-10)
        return y.mean(dim=2)

    compiled = torch.compile(features, fullgraph=True)
    torch.testing.assert_close(compiled(x), features(x))
    public = torch.compile(lambda t: ssa_fast.logmel_delta(t, backend="cpp"))
    torch.testing.assert_close(public(x), ssa_fast.logmel_delta(x, backend="cpp"))


@pytest.mark.parametrize("n_mels", [80, 41])
def test_triton_small_tiles_path(n_mels):
    """The GPU's default tile (64 rows, 16 bins and 16 filters a step) also runs correctly (the
    interpreter's default is 256 rows, 64 bins and every filter in one step); 41 filters leave
    the last step partly past the bank."""
    if "triton" not in ssa_fast.available_backends(device_for("triton")):
        pytest.skip("triton backend unavailable here")
    from ssa_fast.kernels.logmel_delta.filters import analysis_window, mel_filterbank
    from ssa_fast.kernels.logmel_delta.triton import logmel_delta_triton

    dev = device_for("triton")
    x = torch.tensor(np.stack([speech_like(20001, seed=1), noise(20001)]), dtype=torch.float32,
                     device=dev)
    lens = torch.tensor([20001, 9123], device=dev)
    win = analysis_window("hamming", 400, 512).float().to(dev)
    fb = mel_filterbank(16000, 512, n_mels).float().to(dev)
    out = logmel_delta_triton(x, lens, win, fb, 160, True, 1e-10, block_rows=64, block_freqs=16,
                              block_filters=16)
    ref, _ = ssa_fast.logmel_delta(x.cpu().double(), lengths=lens.cpu(), n_mels=n_mels,
                                   backend="reference")
    # the float32 reference on the same device (cuFFT on a GPU) sets the budget, as in habit 2
    ref32, _ = ssa_fast.logmel_delta(x, lengths=lens, n_mels=n_mels, backend="reference")
    budget = 2 * (ref32.cpu().double() - ref).abs().max() + 1e-5
    assert (out.cpu().double() - ref).abs().max() <= max(budget, 1e-4)

    # the launcher computes in float32 whatever it is given: a float64 call (the public API sends
    # none, the registered op takes one) is the float32 call, not the complex128 spectrum's
    # half-words read as float32
    out64 = logmel_delta_triton(x.double(), lens, win.double(), fb.double(), 160, True, 1e-10,
                                block_rows=64, block_freqs=16, block_filters=16)
    assert out64.dtype == torch.float32
    assert (out64.cpu().double() - ref).abs().max() <= max(budget, 1e-4)
