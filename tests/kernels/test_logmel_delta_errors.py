"""logmel_delta: bad input gets a clear error naming the argument."""

import numpy as np
import pytest
import torch

import ssa_fast
from ssa_fast.kernels.logmel_delta.filters import analysis_window, mel_filterbank


@pytest.mark.parametrize(
    "waveform, kwargs, error, match",
    [
        (torch.tensor([0.1, float("nan")] * 600), {}, ValueError, "NaN or Inf"),
        (torch.tensor([0.1, float("inf")] * 600), {}, ValueError, "NaN or Inf"),
        (torch.zeros(0), {}, ValueError, "empty"),
        (torch.zeros(2, 0), {}, ValueError, "empty"),
        (torch.zeros(1, 2, 1000), {}, ValueError, r"shape \(N,\) or \(B, N\)"),
        (torch.zeros((), dtype=torch.float32), {}, ValueError, r"shape \(N,\) or \(B, N\)"),
        (torch.zeros(1000, dtype=torch.int16), {}, TypeError, "floating-point"),
        (np.zeros(1000, dtype=np.int32), {}, TypeError, "floating-point"),
        ([0.0] * 1000, {}, TypeError, "torch.Tensor or numpy.ndarray"),
        (torch.zeros(300), {"center": False}, ValueError, "fewer than n_fft"),
        (torch.zeros(1000), {"fmax": 9000.0}, ValueError, "Nyquist"),
        (torch.zeros(1000), {"sample_rate": 8000, "fmin": 4000.0}, ValueError,
         "need 0 <= fmin < fmax"),
        (torch.zeros(1000), {"sample_rate": 8000, "fmax": 8000.0}, ValueError, "Nyquist"),
        (torch.zeros(1000), {"fmin": 9000.0, "fmax": 8000.0}, ValueError, "fmin < fmax"),
        (torch.zeros(1000), {"win_length": 600}, ValueError, "win_length"),
        (torch.zeros(1000), {"hop_length": 0}, ValueError, "hop_length"),
        (torch.zeros(1000), {"n_mels": 2.5}, TypeError, "n_mels"),
        (torch.zeros(1000), {"sample_rate": True}, TypeError, "sample_rate"),
        (torch.zeros(1000), {"amin": 0.0}, ValueError, "amin"),
        (torch.zeros(1000), {"window": "blackman"}, ValueError, "window"),
        (torch.zeros(1000), {"window": torch.ones(300)}, ValueError, r"window tensor"),
        (torch.zeros(1000), {"lengths": [1000]}, ValueError, "lengths is only accepted"),
        (torch.zeros(2, 1000), {"lengths": [1000]}, ValueError, r"lengths must have shape \(2,\)"),
        (torch.zeros(2, 1000), {"lengths": [1000, 1001]}, ValueError, r"lengths must lie in"),
        (torch.zeros(2, 1000), {"lengths": [0, 10]}, ValueError, r"lengths must lie in"),
        (torch.zeros(2, 1000), {"lengths": [1000, 300], "center": False}, ValueError,
         r"lengths must lie in \[512, 1000\]"),
        (torch.zeros(2, 1000), {"lengths": torch.tensor([1000.0, 10.0])}, TypeError, "integers"),
    ],
)
def test_bad_input(backend, waveform, kwargs, error, match):
    with pytest.raises(error, match=match):
        ssa_fast.logmel_delta(waveform, backend=backend, **kwargs)


def test_module_rejects_bad_configuration():
    with pytest.raises(ValueError, match="Nyquist|fmax"):
        ssa_fast.LogMelDelta(sample_rate=8000, fmax=6000.0)
    with pytest.raises(ValueError, match="win_length"):
        ssa_fast.LogMelDelta(win_length=1024)
    with pytest.raises(ValueError, match="window"):
        ssa_fast.LogMelDelta(window="kaiser")


def test_native_op_backstop_checks():
    """Direct torch.ops calls are checked in C++ too (shape of the filterbank, lengths range)."""
    x = torch.randn(2, 3000)
    win = analysis_window("hamming", 400, 512).float()
    fb = mel_filterbank(16000, 512, 40).float()
    with pytest.raises(RuntimeError, match="mel_fb must have"):
        torch.ops.ssa_fast.logmel_delta(x, torch.tensor([3000, 3000]), win, fb[:, :100], 160,
                                        True, 1e-10)
    with pytest.raises(RuntimeError, match="outside"):
        torch.ops.ssa_fast.logmel_delta(x, torch.tensor([3000, 4000]), win, fb, 160, True, 1e-10)
    with pytest.raises(RuntimeError, match="same dtype"):
        torch.ops.ssa_fast.logmel_delta(x, torch.tensor([3000, 3000]), win.double(), fb, 160,
                                        True, 1e-10)


@pytest.mark.parametrize("backend", [b for b in ("reference", "cpp", "triton")
                                     if b in ssa_fast.available_backends("cpu")])
def test_unchecked_samples_give_non_finite_features_where_they_are(backend):
    """On a GPU the sample values are not read back (that would synchronise every call), so a
    NaN / Inf sample is not an error there: it must make the frames that hold it non-finite and
    leave every finite value as without it.
    Checked for the backends that run on a GPU (Triton here in its interpreter; the CUDA
    kernel's source in test_logmel_cuda_source.py), and for the cpp backend's kernel called
    without the checks of logmel_delta (its fast log made a NaN power a finite 89.1)."""
    from ssa_fast.kernels.logmel_delta import logmel_delta_with_bank, validate_waveform

    window = analysis_window("hamming", 400, 512)
    bank = mel_filterbank(16000, 512, 40, 0.0, 8000.0)
    # 3 s: two Triton tiles in the interpreter (the sample in the first, its reach not past it)
    clean = torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, (2, 48000)).astype("f4"))
    ref = logmel_delta_with_bank(clean, window, bank, 160, backend=backend)
    for bad in (float("nan"), float("inf")):
        x = clean.clone()
        x[1, 24000] = bad
        assert validate_waveform(x, check_values=False) is x
        out = logmel_delta_with_bank(x, window, bank, 160, backend=backend)
        finite = torch.isfinite(out)
        assert finite[0].all()  # the other item is untouched
        t = 24000 // 160  # frames whose window holds the sample, and the deltas' reach of them
        assert not finite[1, 0, t - 1:t + 2].any()
        assert not finite[1, 1, t - 3:t + 4].any() and not finite[1, 2, t - 5:t + 6].any()
        # never a finite wrong value: whatever stays finite is exactly what the clean signal gives
        assert torch.equal(out[finite], ref[finite])
        assert finite[1, 0].all(dim=1).sum() == out.shape[2] - 3  # the static channel is local
        # the deltas: the frames whose regressions read a non-finite static frame, no more
        for ch in (1, 2):
            assert (~finite[1, ch].all(dim=1)).sum() == 3 + 4 * ch


@pytest.mark.parametrize("shape", [(16000, 2), (48000, 6), (3, 2)])
def test_a_samples_by_channels_array_is_refused_not_read_as_a_batch(shape):
    """soundfile reads a multichannel file as (samples, channels): taken as a batch it was
    16000 waveforms of 2 samples, (16000, 3, 1, 40) features of nothing."""
    y = np.random.default_rng(0).standard_normal(shape).astype(np.float32) * 0.1
    for call in (lambda: ssa_fast.logmel_delta(y), lambda: ssa_fast.LogMelDelta()(
            torch.from_numpy(y))):
        with pytest.raises(ValueError, match=r"looks like \(samples, channels\).*\.T\)"):
            call()
    # the channels as a batch, and a batch of short waveforms no more of them than samples
    assert ssa_fast.logmel_delta(y.T).shape[0] == shape[1]
    assert ssa_fast.logmel_delta(np.zeros((2, 8), np.float32)).shape[0] == 2
    # a batch said to be one (lengths: the feature cache's batches of clips of a few samples)
    lengths = torch.full((shape[0],), shape[1])
    for call in (lambda: ssa_fast.logmel_delta(torch.from_numpy(y), lengths=lengths),
                 lambda: ssa_fast.LogMelDelta()(torch.from_numpy(y), lengths=lengths)):
        assert call()[0].shape[0] == shape[0]

