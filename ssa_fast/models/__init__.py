"""ACRNN and SSA-CRNN (design.md sections 4-6).

Names are imported on first use, so that the command line reads the presets and the model names
without torch. ``from ssa_fast.models import ModelOutput`` (or a model class) registers the fused
ops and the output type that ``torch.export.load`` needs, whatever was imported before. (Where
torch is imported already when this package is first imported, the models come at once, as they
did before this package was lazy: ``import torch, ssa_fast.models`` in a fresh process does it
too, but not after anything imported this package without torch.)
"""

import sys

from .._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["ACRNN", "SSACRNN", "ModelOutput", "model_from_config"], ".acrnn"),
    "forward_flops": ".flops",
    **dict.fromkeys(["Classifier", "CRNNTrunk", "FrameAttention", "SelfSpeakerAttention"],
                    ".layers"),
    **dict.fromkeys(["PRESETS", "Preset", "get_preset"], ".presets"),
    **dict.fromkeys(["MODEL_NAMES", "MODELS", "PAPER_MODELS", "ModelSpec", "display_name",
                     "model_spec"], ".registry"),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

if "torch" in sys.modules:
    from . import acrnn  # noqa: F401 (the ops and ModelOutput's pytree, registered)
