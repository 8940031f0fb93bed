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


def test_mel_bands_no_fft_bin_reaches_are_said_once_where_the_caller_asked(recwarn):
    """Bands that no FFT bin falls into stay at the log floor whatever the audio: the function,
    the module and a FeatureConfig built from them say so (as librosa does), once per
    filterbank, naming the caller's line; the defaults, and FeatureConfig.empty_bands (which
    answers the question itself), say nothing."""
    import torch

    import ssa_fast
    from ssa_fast.features import FeatureConfig
    from ssa_fast.kernels.logmel_delta import _cached_bank
    from ssa_fast.kernels.logmel_delta.filters import EmptyMelBandsWarning, _mel_np

    _mel_np.cache_clear()
    # (and the function's bank cache in front of it: a 200-band bank built earlier in this
    # process would give the call below no warning to say)
    _cached_bank.__wrapped__.cache_clear()
    ssa_fast.LogMelDelta()
    ssa_fast.logmel_delta(torch.randn(4000))
    assert not [w for w in recwarn if w.category is EmptyMelBandsWarning]

    with pytest.warns(EmptyMelBandsWarning) as caught:
        ssa_fast.LogMelDelta(n_mels=96, n_fft=256, win_length=256)
    (w,) = caught
    assert str(w.message).startswith("n_mels=96: 1 of the mel bands (0) get no FFT bin (62.5 Hz "
                                     "per bin at n_fft=256 and 16000 Hz")
    assert w.filename == __file__
    with pytest.warns(EmptyMelBandsWarning) as caught:  # the function: its own bank
        ssa_fast.logmel_delta(torch.randn(4000), n_mels=200)
    assert str(caught[0].message).startswith("n_mels=200: 3 of the mel bands (0, 25, 50) get")
    assert caught[0].filename == __file__
    recwarn.clear()
    ssa_fast.LogMelDelta(n_mels=96, n_fft=256, win_length=256)  # said already
    config = FeatureConfig(n_mels=300)
    assert len(config.empty_bands()) > 8
    ssa_fast.LogMelDelta(**config.kwargs())  # the caller asked: not said again
    assert not [w for w in recwarn if w.category is EmptyMelBandsWarning]
