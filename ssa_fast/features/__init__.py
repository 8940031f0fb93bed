"""Feature extraction modules."""

from .logmel import LogMelDelta

__all__ = ["LogMelDelta"]
