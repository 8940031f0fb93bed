"""`FeatureConfig`: the parameters of the 3-D log-Mel, stated once (design.md section 2).

Everything that computes features for training, evaluation or prediction takes one; checkpoints
and run identities store it whole (``to_dict``), so a trained model is always fed the features it
was trained on. Checkpoints written before it existed stored only ``n_mels``; ``from_dict`` fills
the rest with these defaults, the only values those versions could use."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400  # 25 ms
    hop_length: int = 160  # 10 ms
    n_mels: int = 40
    fmin: float = 0.0
    fmax: float | None = None  # None: sample_rate / 2
    window: str = "hamming"
    center: bool = True
    htk: bool = False  # HTK mel scale instead of Slaney
    amin: float = 1e-10  # log(max(S, amin))

    def __post_init__(self):
        from ..kernels.logmel_delta import check_params

        check_params(self.sample_rate, self.n_fft, self.win_length, self.hop_length,
                     self.n_mels, self.fmin, self.fmax, self.window)

    @property
    def frame_seconds(self) -> float:
        """Seconds per feature frame (the hop)."""
        return self.hop_length / self.sample_rate

    def empty_bands(self) -> list[int]:
        """The mel bands that no FFT bin falls into: their filter is all zeros, so they stay at
        the log floor ``ln(amin)`` whatever the audio (more bands than the FFT resolves between
        fmin and fmax; none with the defaults)."""
        from ..kernels.logmel_delta.filters import mel_filterbank

        bank = mel_filterbank(self.sample_rate, self.n_fft, self.n_mels, self.fmin, self.fmax,
                              self.htk)
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
