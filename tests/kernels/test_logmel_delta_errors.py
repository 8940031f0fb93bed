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
