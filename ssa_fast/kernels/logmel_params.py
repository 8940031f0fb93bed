"""The parameters of the 3-D log-Mel (``logmel_delta``): their defaults and their checks,
torch-free, so that ``FeatureConfig`` and the command line's parser read them without importing
torch (the op itself is ``kernels/logmel_delta``, which re-exports these names)."""

from __future__ import annotations

import math
import numbers
import sys
from typing import NamedTuple

import numpy as np

WINDOWS = ("hamming", "hann")  # the analysis windows by name (filters.analysis_window)


class _Defaults(NamedTuple):
    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400  # 25 ms
    hop_length: int = 160  # 10 ms
    n_mels: int = 40
    fmin: float = 0.0
    fmax: float | None = None
    window: str = "hamming"
    center: bool = True
    htk: bool = False
    amin: float = 1e-10


# The feature parameters' defaults (design.md section 2), written once: logmel_delta's signature,
# LogMelDelta's and FeatureConfig's fields take them from here.
DEFAULTS = _Defaults()


def _int_arg(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


# the smallest normal float32: the kernels compute in float32, and the C++ kernel's fast log
# is exact for normal numbers only (an amin of 1e-40 gave -88.0 for ln(amin) = -92.1)
AMIN_LOWEST = float(np.finfo(np.float32).tiny)


def check_amin(amin) -> None:
    """ValueError unless ``amin`` (the floor of the mel power before ``ln``) is a finite float32
    power: at least the smallest normal float32, 1.2e-38."""
    if not (isinstance(amin, numbers.Real) and not isinstance(amin, bool)
            and math.isfinite(amin) and amin >= AMIN_LOWEST):
        raise ValueError(f"amin must be finite and at least {AMIN_LOWEST:.3g} (the floor of the "
                         f"mel power, in float32, before the log), got {amin!r}")


def check_params(sample_rate, n_fft, win_length, hop_length, n_mels, fmin, fmax, window):
    """Validate the STFT / mel-bank parameters; returns them normalised, fmax resolved
    (None -> sample_rate / 2). Shared by :func:`logmel_delta` and ``LogMelDelta``."""
    sample_rate = _int_arg(sample_rate, "sample_rate", 1)
    n_fft = _int_arg(n_fft, "n_fft", 2)
    win_length = _int_arg(win_length, "win_length", 1)
    hop_length = _int_arg(hop_length, "hop_length", 1)
    n_mels = _int_arg(n_mels, "n_mels", 1)
    if win_length > n_fft:
        raise ValueError(f"win_length ({win_length}) must be <= n_fft ({n_fft})")
    nyquist = sample_rate / 2.0
    fmax = nyquist if fmax is None else float(fmax)
    if not 0.0 <= float(fmin) < fmax:
        raise ValueError(f"need 0 <= fmin < fmax, got fmin={fmin}, fmax={fmax}")
    if fmax > nyquist:
        raise ValueError(f"fmax={fmax} Hz exceeds the Nyquist frequency {nyquist} Hz of "
                         f"sample_rate={sample_rate}")
    torch = sys.modules.get("torch")  # (a tensor exists only where torch was imported)
    if torch is not None and isinstance(window, torch.Tensor):
        if window.shape != (win_length,):
            raise ValueError(f"window tensor must have shape ({win_length},), "
                             f"got {tuple(window.shape)}")
    elif window not in WINDOWS:
        raise ValueError(f"window must be one of {WINDOWS} or a tensor, got {window!r}")
    return sample_rate, n_fft, win_length, hop_length, n_mels, float(fmin), fmax
