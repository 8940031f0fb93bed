"""ACRNN and SSA-CRNN (design.md sections 4-6)."""

from .acrnn import ACRNN, SSACRNN, ModelOutput, model_from_config
from .flops import forward_flops
from .layers import Classifier, CRNNTrunk, FrameAttention, SelfSpeakerAttention
from .presets import PRESETS, Preset, get_preset
from .registry import MODEL_NAMES, MODELS, PAPER_MODELS, ModelSpec, display_name, model_spec

__all__ = ["ACRNN", "MODELS", "MODEL_NAMES", "PAPER_MODELS", "PRESETS", "Classifier",
           "CRNNTrunk", "FrameAttention", "ModelOutput", "ModelSpec", "Preset", "SSACRNN",
           "SelfSpeakerAttention", "display_name", "forward_flops", "get_preset",
           "model_from_config", "model_spec"]
