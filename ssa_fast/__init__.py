"""ssa_fast: speaker-attentive speech emotion recognition (SSA-CRNN) with fused kernels.

Public API::

    from ssa_fast import SSACRNN, ACRNN, LogMelDelta, logmel_delta, ssa_attention, l1_project_
"""

from ._backend import BackendUnavailableError, available_backends, use_backend
from .features import LogMelDelta
from .kernels.l1_project import l1_project_
from .kernels.logmel_delta import logmel_delta
from .kernels.ssa_attention import ssa_attention
from .models import ACRNN, SSACRNN, forward_flops

__version__ = "0.1.0"
__all__ = [
    "ACRNN",
    "BackendUnavailableError",
    "LogMelDelta",
    "SSACRNN",
    "available_backends",
    "forward_flops",
    "l1_project_",
    "logmel_delta",
    "ssa_attention",
    "use_backend",
]
