"""Native backends of the 3-D log-Mel: ``torch.ops.ssa_fast.logmel_delta``, which the extension
implements for CPU tensors (csrc/cpu, the cpp backend) and, where built with CUDA, for CUDA
tensors (csrc/cuda, the cuda backend): one wrapper, the dispatcher picks by device.

On CUDA ``SSA_FAST_LOGMEL_REGFFT=1`` (read at each call, once per trace under torch.compile)
picks the second CUDA kernel instead, ``torch.ops.ssa_fast.logmel_delta_regfft``
(csrc/cuda/logmel_delta_regfft.cu: the FFT in registers), for every n_fft both take. It is
opt-in until a GPU session has validated it (benchmarks/RESULTS.md, "Left for a GPU"); the
benchmarks time both in one process.
"""

from __future__ import annotations

import os

import torch

from ..._backend import constant_under_compile, extension_status
from .reference import logmel_delta_fake

REGFFT_ENV = "SSA_FAST_LOGMEL_REGFFT"

if extension_status()[0]:
    torch.library.register_fake("ssa_fast::logmel_delta")(logmel_delta_fake)
    torch.library.register_fake("ssa_fast::logmel_delta_regfft")(logmel_delta_fake)


@constant_under_compile  # (read once when a compiled caller is traced)
def regfft_requested() -> bool:
    """SSA_FAST_LOGMEL_REGFFT is set (not "" or "0"): CUDA calls take the regfft kernel."""
    return os.environ.get(REGFFT_ENV, "0") not in ("", "0")


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
    op = torch.ops.ssa_fast.logmel_delta
    if waveform.is_cuda and regfft_requested():
        op = torch.ops.ssa_fast.logmel_delta_regfft
    return op(waveform, lengths, window, mel_fb, hop_length, center, amin)
