"""ssa_fast: speaker-attentive speech emotion recognition (SSA-CRNN) with fused kernels.

Public API::

    from ssa_fast import SSACRNN, ACRNN, LogMelDelta, logmel_delta, ssa_attention, l1_project_
    from ssa_fast import EmotionClassifier  # trained checkpoint -> emotion of audio

Attributes are imported on first use, so ``import ssa_fast`` (and importing a light submodule such
as ``ssa_fast.audio``) does not pull in torch.
"""

from ._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "ACRNN": "ssa_fast.models",
    "SSACRNN": "ssa_fast.models",
    "forward_flops": "ssa_fast.models",
    "LogMelDelta": "ssa_fast.features",
    "EmotionClassifier": "ssa_fast.predict",
    "Prediction": "ssa_fast.predict",
    "logmel_delta": "ssa_fast.kernels.logmel_delta",
    "ssa_attention": "ssa_fast.kernels.ssa_attention",
    "l1_project_": "ssa_fast.kernels.l1_project",
    "BackendUnavailableError": "ssa_fast.errors",
    "available_backends": "ssa_fast._backend",
    "use_backend": "ssa_fast._backend",
    "keep_freed_memory": "ssa_fast._malloc",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
