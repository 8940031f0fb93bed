"""`LogMelDelta`: the 3-D log-Mel front end as an nn.Module."""

from __future__ import annotations

import torch
from torch import nn

from ..kernels.logmel_delta import (
    DEFAULTS,
    check_amin,
    check_params,
    frame_count,
    logmel_delta_with_bank,
    validate_waveform,
)
from ..kernels.logmel_delta.filters import analysis_window, mel_filterbank


class LogMelDelta(nn.Module):
    """Waveform ``(N,)`` / ``(B, N)`` -> ``(3, T, n_mels)`` / ``(B, 3, T, n_mels)``.

    Holds the analysis window and the mel filterbank as buffers (they follow ``.to(device)``);
    the parameters are those of :func:`ssa_fast.logmel_delta` (design.md section 2 defaults).
    """

    def __init__(self, sample_rate: int = DEFAULTS.sample_rate, n_fft: int = DEFAULTS.n_fft,
                 win_length: int = DEFAULTS.win_length, hop_length: int = DEFAULTS.hop_length,
                 n_mels: int = DEFAULTS.n_mels, fmin: float = DEFAULTS.fmin,
                 fmax: float | None = DEFAULTS.fmax,
                 window: str | torch.Tensor = DEFAULTS.window, center: bool = DEFAULTS.center,
                 htk: bool = DEFAULTS.htk, amin: float = DEFAULTS.amin,
                 backend: str | None = None):
        super().__init__()
        sample_rate, n_fft, win_length, hop_length, n_mels, fmin, fmax = check_params(
            sample_rate, n_fft, win_length, hop_length, n_mels, fmin, fmax, window)
        check_amin(amin)
        self.sample_rate, self.n_fft, self.win_length = sample_rate, n_fft, win_length
        self.hop_length, self.n_mels, self.center = hop_length, n_mels, center
        self.fmin, self.fmax, self.htk, self.amin = fmin, fmax, htk, amin
        self.backend = backend
        self.register_buffer("window", analysis_window(window, win_length, n_fft).float())
        self.register_buffer("mel_fb",
                             mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax, htk).float())

    def _apply(self, fn, recurse=True):
        """Buffers follow device moves (and float64), but stay float32 under ``.half()``,
        ``.bfloat16()`` or ``.to(torch.bfloat16)`` of this module or a model holding it: the
        kernels compute in float32 whatever the waveform's dtype, and a window and filterbank
        rounded to 16 bits moved the features by up to 1e-2 (bf16), ten times the tolerance
        against librosa. The buffers kept are those the module holds at the conversion (a
        filterbank loaded with load_state_dict or edited in place; a copy taken at construction
        put the default bank back, silently)."""
        before = {name: getattr(self, name) for name in ("window", "mel_fb")}
        super()._apply(fn, recurse)
        for name, exact in before.items():
            buf = getattr(self, name)
            if buf.dtype in (torch.float16, torch.bfloat16):
                setattr(self, name, exact.to(device=buf.device, dtype=torch.float32))
        return self

    def forward(self, waveform: torch.Tensor, lengths=None):
        waveform = validate_waveform(waveform, batch=lengths is not None)
        return logmel_delta_with_bank(waveform, self.window, self.mel_fb, self.hop_length,
                                      self.center, self.amin, lengths, self.backend)

    def frames(self, n_samples: int) -> int:
        """Frames produced for a waveform of `n_samples` samples."""
        return frame_count(n_samples, self.n_fft, self.hop_length, self.center)

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, n_fft={self.n_fft}, win_length={self.win_length},"
                f" hop_length={self.hop_length}, n_mels={self.n_mels}, center={self.center}")
