"""Reading audio files into float32 mono waveforms at the model's sample rate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import UserError


class AudioError(UserError):
    """A file that cannot be used as audio (unreadable, empty, corrupt); names the file."""


def path_problem(path: str | Path) -> str | None:
    """What makes ``path`` no audio file before a byte of it is read: ``no such file``, ``a
    folder, not an audio file`` or ``an empty file (0 bytes), not audio``; None otherwise.
    (soundfile says "System error." of a missing file and "Format not recognised." of a folder.)"""
    path = Path(path)
    if not path.exists():
        return "no such file"
    if path.is_dir():
        return "a folder, not an audio file"
    if path.stat().st_size == 0:
        return "an empty file (0 bytes), not audio"
    return None


def _unreadable(path: str | Path, exc: Exception) -> AudioError:
    """soundfile's failure on ``path`` as an AudioError naming the file: in plain words where the
    path itself is the cause (:func:`path_problem`), else with soundfile's message."""
    return AudioError(f"{path}: {path_problem(path) or f'cannot read audio ({exc})'}")


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


# integer PCM -> float in [-1, 1) as soundfile reads files: divided by 2^(bits - 1)
# (unsigned 8-bit, as in 8-bit WAV, centred on 128 first)
_PCM_SCALE = {np.dtype(np.int8): (0, 2.0 ** 7), np.dtype(np.uint8): (128, 2.0 ** 7),
              np.dtype(np.int16): (0, 2.0 ** 15), np.dtype(np.int32): (0, 2.0 ** 31)}


def as_float(y: np.ndarray, name: str = "waveform") -> np.ndarray:
    """Samples as float32 on the scale of audio files: float arrays unchanged, integer PCM
    (int8, uint8, int16, int32, e.g. ``soundfile.read(..., dtype="int16")``) scaled as files
    are; any other dtype (int64, bool, complex...) a TypeError naming ``name`` and the dtype."""
    if not y.dtype.isnative:  # (big-endian samples: the same values in this machine's order)
        y = y.astype(y.dtype.newbyteorder("="))
    if y.dtype.kind == "f":
        return y.astype(np.float32, copy=False)
    if y.dtype in _PCM_SCALE:
        offset, scale = _PCM_SCALE[y.dtype]
        return ((y.astype(np.float64) - offset) / scale).astype(np.float32)
    raise TypeError(f"a {name} of dtype {y.dtype} is not audio samples: pass float samples in "
                    "[-1, 1] or integer PCM (int8, uint8, int16, int32)")


# A float waveform peaking above this is not on the scale of audio files (float audio lies in
# [-1, 1]; a little over 1 is a hot recording): most likely integer PCM cast to float unscaled,
# whose log-Mel is shifted by 2 ln 32768 and, normalised with a training speaker's statistics,
# classified as other speech.
FLOAT_PEAK_WARNING = 2.0


def mono(wave, name: str = "waveform") -> np.ndarray:
    """An in-memory waveform (numpy array or tensor; mono, or channels x samples either way
    round with at most 8 channels, averaged) as float32 mono samples, integer PCM scaled as
    files are (:func:`as_float`), checked as files are (:func:`check_samples`); a ValueError
    naming ``name`` otherwise, a warning for float samples far beyond [-1, 1]."""
    if hasattr(wave, "detach"):  # a torch tensor (without importing torch here)
        wave = wave.detach().cpu()
        if wave.is_floating_point() and wave.element_size() < 4:  # bf16 / fp16: numpy has
            wave = wave.float()  # no bf16 (the samples as they are, widened)
        wave = wave.numpy()
    y = as_float(np.asarray(wave), name)
    if y.ndim == 2 and min(y.shape) <= 8:  # (channels, N) or (N, channels): mix down
        y = y.mean(axis=int(np.argmin(y.shape)))
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"a {name} must be a non-empty 1-D array (or channels x samples), got "
                         f"shape {y.shape}")
    y = check_samples(np.ascontiguousarray(y, dtype=np.float32), name)
    peak = float(np.abs(y).max())
    if peak > FLOAT_PEAK_WARNING:  # (a scale the features keep: another class after statistics)
        from .. import _warn

        _warn.warn(f"{name}: float samples up to {peak:.3g}, but float audio lies in [-1, 1]: "
                   "integer PCM converted to float without scaling (e.g. scipy.io.wavfile)? "
                   "divide it by 32768, or pass the int16 array itself (scaled as files are)",
                   RuntimeWarning)
    return y


def read(path: str | Path) -> tuple[np.ndarray, int]:
    """An audio file as float32 mono samples at its own rate, and that rate: what :func:`load`
    resamples. Multi-channel audio is averaged; integer PCM is scaled by soundfile. Raises
    AudioError naming the file when it cannot be read, holds no samples, or holds samples that
    are not audio (see :func:`check_samples`)."""
    import soundfile as sf

    path = Path(path)
    try:
        y, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for corrupt / missing files
        raise _unreadable(path, exc) from exc
    if y.shape[0] == 0:
        raise AudioError(f"{path}: the file holds no samples")
    y = check_samples(y.mean(axis=1) if y.shape[1] > 1 else y[:, 0], path)
    return np.ascontiguousarray(y, dtype=np.float32), int(sr)


def load(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Load an audio file as float32 mono in [-1, 1] at `sample_rate` Hz (:func:`read`, then
    :func:`resample`); AudioError naming the file as :func:`read` says."""
    y, sr = read(path)
    out = resample(y, sr, sample_rate)
    if len(out) == 0:
        raise AudioError(_vanishes(path, len(y), sr, sample_rate))
    return out


def _vanishes(path, n: int, sr: int, sample_rate: int) -> str:
    return (f"{path}: {n} sample(s) at {sr} Hz give no sample at {sample_rate} Hz (too short "
            "to resample)")


def _open(path: Path):
    import soundfile as sf

    try:
        return sf.SoundFile(str(path))
    except Exception as exc:
        raise _unreadable(path, exc) from exc


def _mono_blocks(fh, path: Path, block_samples: int) -> Iterator[tuple[np.ndarray, bool]]:
    """(float32 mono block at the file's own rate, whether it is the last) of an open file;
    AudioError naming the file for samples that are not audio or a file without any."""
    total = 0
    while True:
        try:
            y = fh.read(block_samples, dtype="float32", always_2d=True)
        except Exception as exc:
            raise AudioError(f"{path}: cannot read audio ({exc})") from exc
        last = len(y) < block_samples
        y = check_samples(y.mean(axis=1) if y.shape[1] > 1 else y[:, 0], path)
        total += len(y)
        yield y, last
        if last:
            break
    if total == 0:
        raise AudioError(f"{path}: the file holds no samples")


def audio_blocks(path: str | Path, sample_rate: int = 16000,
                 block_samples: int = 1 << 20) -> Iterator[np.ndarray]:
    """float32 mono blocks of a file at ``sample_rate`` (streamed resampling, channels averaged).
    Raises AudioError naming the file when it cannot be read or holds samples that are not
    audio (non-finite, or beyond MAX_SAMPLE)."""
    path = Path(path)
    with _open(path) as fh:
        stream = None
        if fh.samplerate != sample_rate:
            import soxr

            stream = soxr.ResampleStream(fh.samplerate, sample_rate, 1, dtype="float32",
                                         quality="HQ")
        n_in = n_out = 0
        for y, last in _mono_blocks(fh, path, block_samples):
            n_in += len(y)
            if stream is not None:
                y = stream.resample_chunk(y, last=last)
            if len(y):
                n_out += len(y)
                yield np.ascontiguousarray(y, dtype=np.float32)
        if n_out == 0:
            raise AudioError(_vanishes(path, n_in, fh.samplerate, sample_rate))


def swing(y) -> float:
    """Half the peak-to-peak range of the samples ``y`` (0 for none): the peak of a signal
    without its offset (predict.engine.unclassifiable judges silence by it)."""
    if len(y) == 0:
        return 0.0
    return (float(y.max()) - float(y.min())) / 2


def scan(path: str | Path, block_samples: int = 1 << 20) -> tuple[float, float]:
    """(duration in seconds, :func:`swing`) of a file, read block by block at its own rate
    (channels averaged) without holding it; AudioError as :func:`audio_blocks`."""
    path = Path(path)
    n, extremes = 0, []
    with _open(path) as fh:
        for y, _ in _mono_blocks(fh, path, block_samples):
            if len(y):
                n += len(y)
                extremes += [y.min(), y.max()]
        return n / fh.samplerate, swing(np.array(extremes))
