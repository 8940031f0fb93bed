"""ssa_fast: speaker-attentive speech emotion recognition (SSA-CRNN) with fused kernels.

Public API::

    from ssa_fast import logmel_delta, LogMelDelta, use_backend
"""

from ._backend import BackendUnavailableError, available_backends, use_backend
from .features import LogMelDelta
from .kernels.logmel_delta import logmel_delta

__version__ = "0.1.0"
__all__ = [
    "BackendUnavailableError",
    "LogMelDelta",
    "available_backends",
    "logmel_delta",
    "use_backend",
]
