"""Analysis window and mel filterbank for :func:`ssa_fast.logmel_delta`.

Both are computed in float64 and follow the conventions of librosa / scipy exactly (they are tested
against ``librosa.filters.mel`` and ``scipy.signal.get_window``), so that librosa need not be
installed to run the library.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from ... import _warn
from ..logmel_params import WINDOWS


def _window_np(name: str, win_length: int) -> np.ndarray:
    """Periodic (DFT-even) window as ``scipy.signal.get_window(name, win_length)``."""
    n = np.arange(win_length, dtype=np.float64)
    phase = np.cos(2.0 * np.pi * n / win_length)
    if name == "hamming":
        return 0.54 - 0.46 * phase
    if name == "hann":
        return 0.5 - 0.5 * phase
    raise ValueError(f"window must be one of {WINDOWS} or a 1-D tensor, got {name!r}")


def pad_center(window: torch.Tensor, n_fft: int) -> torch.Tensor:
    """Zero-pad a window of length <= n_fft to n_fft, centred (as librosa.util.pad_center)."""
    lpad = (n_fft - window.shape[-1]) // 2
    return torch.nn.functional.pad(window, (lpad, n_fft - window.shape[-1] - lpad))


def analysis_window(window: str | torch.Tensor, win_length: int, n_fft: int) -> torch.Tensor:
    """The window of length ``win_length`` centred in ``n_fft`` samples (float64, CPU)."""
    if isinstance(window, torch.Tensor):
        if window.requires_grad:  # (detached here: a learnable window never learned, silently)
            raise ValueError("window: a tensor that requires grad gets no gradient from "
                             "logmel_delta (the window is a fixed analysis window); pass "
                             "window.detach()")
        w = window.detach().to("cpu", torch.float64)
    else:
        w = torch.from_numpy(_window_np(window, win_length))
    return pad_center(w, n_fft)


def hz_to_mel(freq: np.ndarray, htk: bool = False) -> np.ndarray:
    freq = np.asarray(freq, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + freq / 700.0)
    # Slaney: linear below 1 kHz (3 mels per 200 Hz), logarithmic above.
    f_sp = 200.0 / 3.0
    min_log_hz, min_log_mel = 1000.0, 1000.0 / f_sp
    logstep = math.log(6.4) / 27.0
    linear = freq / f_sp
    log = min_log_mel + np.log(np.maximum(freq, min_log_hz) / min_log_hz) / logstep
    return np.where(freq >= min_log_hz, log, linear)


def mel_to_hz(mels: np.ndarray, htk: bool = False) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    f_sp = 200.0 / 3.0
    min_log_hz, min_log_mel = 1000.0, 1000.0 / f_sp
    logstep = math.log(6.4) / 27.0
    linear = f_sp * mels
    log = min_log_hz * np.exp(logstep * (np.maximum(mels, min_log_mel) - min_log_mel))
    return np.where(mels >= min_log_mel, log, linear)


@lru_cache(maxsize=32)
def _mel_np(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float,
            htk: bool) -> np.ndarray:
    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)  # k sr / n_fft (< sr / 2: odd n_fft)
    mel_edges = mel_to_hz(np.linspace(hz_to_mel(fmin, htk), hz_to_mel(fmax, htk), n_mels + 2), htk)
    widths = np.diff(mel_edges)
    ramps = mel_edges[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    # Slaney normalisation: each filter has unit area in Hz.
    weights *= (2.0 / (mel_edges[2:] - mel_edges[:-2]))[:, None]
    weights.setflags(write=False)
    empty = np.flatnonzero(weights.max(1) <= 0)
    if empty.size:  # (said once per filterbank: this function is cached)
        shown = ", ".join(map(str, empty[:8])) + (", ..." if empty.size > 8 else "")
        _warn.warn(f"n_mels={n_mels}: {empty.size} of the mel bands ({shown}) get no FFT bin "
                   f"({sample_rate / n_fft:g} Hz per bin at n_fft={n_fft} and {sample_rate} Hz"
                   f" between fmin={fmin:g} and fmax={fmax:g} Hz) and stay at the log floor "
                   "whatever the audio; use fewer mel bands or a larger n_fft",
                   EmptyMelBandsWarning)
    return weights


class EmptyMelBandsWarning(UserWarning):
    """A mel filterbank with bands that no FFT bin falls into (as librosa's "Empty filters
    detected in mel frequency basis")."""


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None, htk: bool = False) -> torch.Tensor:
    """Mel filterbank ``(n_mels, n_fft // 2 + 1)`` in float64, equal to
    ``librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax,
    htk=htk)`` (Slaney normalisation)."""
    fmax = sample_rate / 2.0 if fmax is None else float(fmax)
    return torch.from_numpy(_mel_np(int(sample_rate), int(n_fft), int(n_mels), float(fmin), fmax,
                                    bool(htk)).copy())
