"""`FeatureConfig`: the parameters of the 3-D log-Mel, stated once (design.md section 2), with
the defaults of the op (``kernels.logmel_params.DEFAULTS``, where they are written).

Everything that computes features for training, evaluation or prediction takes one; checkpoints
and run identities store it whole (``to_dict``), so a trained model is always fed the features it
was trained on. Checkpoints written before it existed stored only ``n_mels``; ``from_dict`` fills
the rest with these defaults, the only values those versions could use."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, fields

import numpy as np  # (imported by the parameter checks below already)

from ..kernels.logmel_params import DEFAULTS, check_amin, check_params


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate: int = DEFAULTS.sample_rate
    n_fft: int = DEFAULTS.n_fft
    win_length: int = DEFAULTS.win_length
    hop_length: int = DEFAULTS.hop_length
    n_mels: int = DEFAULTS.n_mels
    fmin: float = DEFAULTS.fmin
    fmax: float | None = DEFAULTS.fmax  # None: sample_rate / 2
    window: str = DEFAULTS.window
    center: bool = DEFAULTS.center
    htk: bool = DEFAULTS.htk  # HTK mel scale instead of Slaney
    amin: float = DEFAULTS.amin  # log(max(S, amin))

    def __post_init__(self):
        check_params(self.sample_rate, self.n_fft, self.win_length, self.hop_length,
                     self.n_mels, self.fmin, self.fmax, self.window)
        check_amin(self.amin)
        for name in ("center", "htk"):  # (a string "False" read as true: the other features)
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {value!r}")
            object.__setattr__(self, name, bool(value))

    @property
    def frame_seconds(self) -> float:
        """Seconds per feature frame (the hop)."""
        return self.hop_length / self.sample_rate

    def empty_bands(self) -> list[int]:
        """The mel bands that no FFT bin falls into: their filter is all zeros, so they stay at
        the log floor ``ln(amin)`` whatever the audio (more bands than the FFT resolves between
        fmin and fmax; none with the defaults)."""
        from ..kernels.logmel_delta.filters import EmptyMelBandsWarning, mel_filterbank

        # The caller says it in its own words; the filterbank, cached, warns no more after.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EmptyMelBandsWarning)
            bank = mel_filterbank(self.sample_rate, self.n_fft, self.n_mels, self.fmin,
                                  self.fmax, self.htk)
        return [int(i) for i in (bank.amax(1) <= 0).nonzero().flatten()]

    def to_dict(self) -> dict:
        return asdict(self)

    def kwargs(self) -> dict:
        """Keyword arguments of :func:`ssa_fast.logmel_delta` and :class:`LogMelDelta`."""
        return self.to_dict()

    @classmethod
    def from_dict(cls, d: dict | None) -> FeatureConfig:
        """From a stored dict (missing keys take the defaults; unknown keys are an error)."""
        d = dict(d or {})
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown feature parameters: {sorted(unknown)}")
        return cls(**d)

    def module(self, backend: str | None = None):
        """The :class:`LogMelDelta` front end of these parameters."""
        from .logmel import LogMelDelta

        return LogMelDelta(**self.kwargs(), backend=backend)
