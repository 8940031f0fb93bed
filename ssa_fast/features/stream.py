"""3-D log-Mel of long audio files in bounded memory.

:func:`stream_features` reads a file block by block (soundfile), resamples it as a stream
(soxr), and yields the features of consecutive frame ranges. Each block is computed on its
samples plus a halo of ``HALO_FRAMES`` frames on both sides and cropped, so the concatenated
blocks equal the features of the whole file (the halo covers the window, the delta and the
delta-delta edge rules). Memory is O(block), whatever the file length.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

HALO_FRAMES = 16  # > n_fft / 2 / hop (window) + 4 (delta) + 4 (delta-delta) frames


def audio_blocks(path: str | Path, sample_rate: int = 16000,
                 block_samples: int = 1 << 20) -> Iterator[np.ndarray]:
    """float32 mono blocks of a file at ``sample_rate`` (streamed resampling, channels averaged).
    Raises AudioError naming the file when it cannot be read or holds samples that are not
    audio (non-finite, or beyond MAX_SAMPLE)."""
    import soundfile as sf

    from ..audio.io import AudioError, check_samples

    path = Path(path)
    try:
        fh = sf.SoundFile(str(path))
    except Exception as exc:
        raise AudioError(f"{path}: cannot read audio ({exc})") from exc
    with fh:
        stream = None
        if fh.samplerate != sample_rate:
            import soxr

            stream = soxr.ResampleStream(fh.samplerate, sample_rate, 1, dtype="float32",
                                         quality="HQ")
        total = 0
        while True:
            try:
                y = fh.read(block_samples, dtype="float32", always_2d=True)
            except Exception as exc:
                raise AudioError(f"{path}: cannot read audio ({exc})") from exc
            last = len(y) < block_samples
            y = check_samples(y.mean(axis=1) if y.shape[1] > 1 else y[:, 0], path)
            total += len(y)
            if stream is not None:
                y = stream.resample_chunk(y, last=last)
            if len(y):
                yield np.ascontiguousarray(y, dtype=np.float32)
            if last:
                break
        if total == 0:
            raise AudioError(f"{path}: the file holds no samples")


def stream_features(path: str | Path, *, block_frames: int = 6000, sample_rate: int = 16000,
                    hop_length: int = 160, n_fft: int = 512, backend: str | None = None,
                    **feature_params) -> Iterator[torch.Tensor]:
    """Yield (3, F, n_mels) features of consecutive frames of an audio file (F = block_frames
    except the last block); their concatenation equals ``logmel_delta`` of the whole file
    (center=True framing)."""
    from ..kernels.logmel_delta import logmel_delta

    if block_frames < 1:
        raise ValueError(f"block_frames must be >= 1, got {block_frames}")
    if feature_params.get("center", True) is False:
        raise ValueError("stream_features supports center=True framing only")
    H = HALO_FRAMES

    def feats(samples: np.ndarray) -> torch.Tensor:
        return logmel_delta(torch.from_numpy(samples), sample_rate=sample_rate,
                            hop_length=hop_length, n_fft=n_fft, backend=backend,
                            **feature_params)

    buf = np.zeros(0, np.float32)
    buf_start = 0  # sample index of buf[0] in the file
    f0 = 0  # next frame to yield
    step = 1 << 20
    for block in audio_blocks(path, sample_rate, step):
        buf = np.concatenate([buf, block])
        # a block of frames [f0, f0 + B) needs samples up to (f0 + B + H) * hop
        while buf_start + len(buf) >= (f0 + block_frames + H) * hop_length:
            s0 = max(0, (f0 - H) * hop_length)
            s1 = (f0 + block_frames + H) * hop_length
            out = feats(buf[s0 - buf_start:s1 - buf_start])
            j = f0 - s0 // hop_length
            yield out[:, j:j + block_frames]
            f0 += block_frames
            keep = max(0, (f0 - H) * hop_length)
            buf, buf_start = buf[keep - buf_start:], keep
    n = buf_start + len(buf)
    n_frames = 1 + n // hop_length
    if f0 < n_frames:
        s0 = max(0, (f0 - H) * hop_length)
        out = feats(buf[s0 - buf_start:])
        yield out[:, f0 - s0 // hop_length:]
