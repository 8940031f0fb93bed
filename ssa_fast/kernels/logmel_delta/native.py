"""Native backends of the 3-D log-Mel: ``torch.ops.ssa_fast.logmel_delta``, which the extension
implements for CPU tensors (csrc/cpu, the cpp backend) and, where built with CUDA, for CUDA
tensors (csrc/cuda, the cuda backend): one wrapper, the dispatcher picks by device."""

from __future__ import annotations

import torch

from ..._backend import extension_status
from .reference import logmel_delta_fake

if extension_status()[0]:
    torch.library.register_fake("ssa_fast::logmel_delta")(logmel_delta_fake)


def logmel_delta_native(
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
