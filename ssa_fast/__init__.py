"""ssa_fast: speaker-attentive speech emotion recognition (SSA-CRNN) with fused kernels.

Public API::

    from ssa_fast import logmel_delta, LogMelDelta, ssa_attention, l1_project_, use_backend
"""

from ._backend import BackendUnavailableError, available_backends, use_backend
from .features import LogMelDelta
from .kernels.l1_project import l1_project_
from .kernels.logmel_delta import logmel_delta
from .kernels.ssa_attention import ssa_attention

__version__ = "0.1.0"
__all__ = [
    "BackendUnavailableError",
    "LogMelDelta",
    "available_backends",
    "l1_project_",
    "logmel_delta",
    "ssa_attention",
    "use_backend",
]
