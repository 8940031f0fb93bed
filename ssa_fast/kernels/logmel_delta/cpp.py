"""C++ backend of the 3-D log-Mel: wrapper over ``torch.ops.ssa_fast.logmel_delta``."""

from __future__ import annotations

import torch

from ..._backend import extension_status
from .reference import frame_count

if extension_status()[0]:

    @torch.library.register_fake("ssa_fast::logmel_delta")
    def _(waveform, lengths, window, mel_fb, hop_length, center, amin):
        T = frame_count(waveform.shape[1], window.shape[0], hop_length, center)
        return waveform.new_empty(waveform.shape[0], 3, T, mel_fb.shape[0])


def logmel_delta_cpp(
    waveform: torch.Tensor,  # (B, N)
    lengths: torch.Tensor | None,  # (B,) or None
    window: torch.Tensor,  # (n_fft,)
    mel_fb: torch.Tensor,  # (M, F)
    hop_length: int,
    center: bool,
    amin: float,
) -> torch.Tensor:  # (B, 3, T, M)
    if lengths is None:
        # (on the waveform's device: a host tensor would cost the CUDA kernel a blocking copy)
        lengths = torch.full((waveform.shape[0],), waveform.shape[1], dtype=torch.int64,
                             device=waveform.device)
    return torch.ops.ssa_fast.logmel_delta(waveform, lengths, window, mel_fb, hop_length, center,
                                           amin)
