"""3-D log-Mel of long audio files in bounded memory.

:func:`stream_features` reads a file block by block (soundfile), resamples it as a stream
(soxr), and yields the features of consecutive frame ranges. Each block is computed on its
samples plus a halo of frames on both sides (:func:`halo_frames`) and cropped, so the
concatenated blocks equal the features of the whole file (the halo covers the window, the delta and
the delta-delta edge rules). Memory is O(block), whatever the file length.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ..kernels.logmel_delta import frame_count
from .config import FeatureConfig


def halo_frames(features: FeatureConfig) -> int:
    """Frames of context a block needs on each side to equal the whole file: the frames its
    window reaches into (``n_fft // 2`` samples), plus 2 for the delta and 2 for the
    delta-delta (each a regression over +-2 frames), plus one."""
    return -(-(features.n_fft // 2) // features.hop_length) + 4 + 1


def stream_features(path: str | Path, features: FeatureConfig | None = None, *,
                    block_frames: int = 6000, backend: str | None = None
                    ) -> Iterator[torch.Tensor]:
    """Yield (3, F, n_mels) features (``features``, default FeatureConfig()) of consecutive
    frames of an audio file (F = block_frames except the last block); their concatenation equals
    the features of the whole file at ``features.sample_rate`` (center=True framing)."""
    from ..audio.io import audio_blocks

    features = FeatureConfig() if features is None else features
    if block_frames < 1:
        raise ValueError(f"block_frames must be >= 1, got {block_frames}")
    if not features.center:
        raise ValueError("stream_features supports center=True framing only")
    H = halo_frames(features)
    hop_length = features.hop_length
    front_end = features.module(backend)

    def feats(samples: np.ndarray) -> torch.Tensor:
        return front_end(torch.from_numpy(samples))

    buf = np.zeros(0, np.float32)
    buf_start = 0  # sample index of buf[0] in the file
    f0 = 0  # next frame to yield
    step = 1 << 20
    for block in audio_blocks(path, features.sample_rate, step):
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
    n_frames = frame_count(n, features.n_fft, hop_length, True)
    if f0 < n_frames:
        s0 = max(0, (f0 - H) * hop_length)
        out = feats(buf[s0 - buf_start:])
        yield out[:, f0 - s0 // hop_length:]
