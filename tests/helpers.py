"""Ground truth from librosa (design.md section 2), in float64.

librosa is imported by the function, not the module: on a machine without it (the GPU image) only
the tests that need the ground truth skip, not every test of the modules importing this one."""

import numpy as np
import pytest


def librosa_logmel_delta(y: np.ndarray, sample_rate=16000, n_fft=512, win_length=400,
                         hop_length=160, n_mels=40, fmin=0.0, fmax=None, window="hamming",
                         center=True, htk=False, amin=1e-10) -> np.ndarray:
    """(3, T, n_mels) float64."""
    librosa = pytest.importorskip("librosa")
    S = librosa.feature.melspectrogram(
        y=np.asarray(y, dtype=np.float64), sr=sample_rate, n_fft=n_fft, hop_length=hop_length,
        win_length=win_length, window=window, center=center, pad_mode="constant", power=2.0,
        n_mels=n_mels, fmin=fmin, fmax=fmax if fmax is not None else sample_rate / 2, htk=htk)
    c = np.log(np.maximum(S, amin))
    d = librosa.feature.delta(c, width=5, order=1, mode="nearest", axis=-1)
    dd = librosa.feature.delta(d, width=5, order=1, mode="nearest", axis=-1)
    return np.stack([c, d, dd]).transpose(0, 2, 1)
