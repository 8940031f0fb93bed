"""The window and mel filterbank equal scipy's and librosa's."""

import numpy as np
import pytest
import scipy.signal

from ssa_fast.kernels.logmel_delta.filters import (
    analysis_window,
    hz_to_mel,
    mel_filterbank,
    mel_to_hz,
)

librosa = pytest.importorskip("librosa")


@pytest.mark.parametrize("sr, n_fft, n_mels, fmin, fmax, htk", [
    (16000, 512, 40, 0.0, 8000.0, False),
    (16000, 512, 40, 0.0, 8000.0, True),
    (16000, 512, 80, 40.0, 7600.0, False),
    (22050, 1024, 128, 0.0, None, False),
    (8000, 256, 23, 100.0, 3800.0, True),
])
def test_mel_filterbank_matches_librosa(sr, n_fft, n_mels, fmin, fmax, htk):
    ours = mel_filterbank(sr, n_fft, n_mels, fmin, fmax, htk).numpy()
    theirs = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax,
                                 htk=htk, dtype=np.float64)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("htk", [False, True])
def test_mel_scale_round_trip_and_librosa(htk):
    f = np.array([0.0, 55.0, 440.0, 999.0, 1000.0, 1001.0, 4000.0, 7999.0])
    np.testing.assert_allclose(hz_to_mel(f, htk), librosa.hz_to_mel(f, htk=htk), rtol=1e-12)
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(f, htk), htk), f, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("name", ["hamming", "hann"])
@pytest.mark.parametrize("win_length, n_fft", [(400, 512), (512, 512), (401, 512), (255, 256)])
def test_window_matches_scipy_centred(name, win_length, n_fft):
    ours = analysis_window(name, win_length, n_fft).numpy()
    w = scipy.signal.get_window(name, win_length, fftbins=True)
    np.testing.assert_allclose(ours, librosa.util.pad_center(w, size=n_fft), rtol=1e-12,
                               atol=1e-15)
