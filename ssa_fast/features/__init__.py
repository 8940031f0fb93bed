"""Feature extraction: the parameters (`FeatureConfig`) and the front-end module.

Names are imported on first use: the command line reads ``FeatureConfig``'s defaults without
torch."""

from .._lazy import lazy_exports

_EXPORTS = {"FeatureConfig": ".config", "LogMelDelta": ".logmel"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
