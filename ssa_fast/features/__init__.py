"""Feature extraction: the parameters (`FeatureConfig`) and the front-end module."""

from .config import FeatureConfig
from .logmel import LogMelDelta

__all__ = ["FeatureConfig", "LogMelDelta"]
