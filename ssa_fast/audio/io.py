"""Reading audio files into float32 mono waveforms at the model's sample rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError


class AudioError(UserError):
    """A file that cannot be used as audio (unreadable, empty, corrupt); names the file."""


def resample(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Band-limited resampling (soxr, high quality) of a 1-D float signal."""
    if sr_in == sr_out:
        return y
    import soxr

    return soxr.resample(y, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)


def check_samples(y: np.ndarray, path: str | Path) -> np.ndarray:
    """``y`` if its samples can be audio, else AudioError naming the file: non-finite samples, or
    float samples so large (beyond the feature extractor's MAX_SAMPLE) that they are not audio
    but a corrupt file, and would abort a whole multi-file run inside feature extraction."""
    from ..kernels.logmel_delta import MAX_SAMPLE

    if not np.isfinite(y).all():
        raise AudioError(f"{path}: the file holds NaN or Inf samples")
    peak = float(np.abs(y).max()) if y.size else 0.0
    if peak > MAX_SAMPLE:
        raise AudioError(f"{path}: samples up to {peak:.3g} are not audio (float audio lies in "
                         f"[-1, 1]; at most {MAX_SAMPLE:g} is accepted)")
    return y


def load(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Load an audio file as float32 mono in [-1, 1] at `sample_rate` Hz.

    Multi-channel audio is averaged; integer PCM is scaled by soundfile. Raises AudioError naming
    the file when it cannot be read, holds no samples, or holds samples that are not audio
    (see :func:`check_samples`).
    """
    import soundfile as sf

    path = Path(path)
    try:
        y, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for corrupt / missing files
        raise AudioError(f"{path}: cannot read audio ({exc})") from exc
    if y.shape[0] == 0:
        raise AudioError(f"{path}: the file holds no samples")
    y = check_samples(y.mean(axis=1) if y.shape[1] > 1 else y[:, 0], path)
    return resample(np.ascontiguousarray(y, dtype=np.float32), int(sr), sample_rate)
