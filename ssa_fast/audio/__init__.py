"""Audio in: file loading (mono, float, resampled) and speech synthesis with espeak-ng."""

from .espeak import EspeakError, synthesize
from .io import AudioError, load, mono, resample

__all__ = ["AudioError", "EspeakError", "load", "mono", "resample", "synthesize"]
