"""ACRNN and SSA-CRNN (design.md sections 4-6)."""

from .acrnn import ACRNN, SSACRNN, SSAOutput, model_from_config
from .flops import forward_flops
from .layers import Classifier, CRNNTrunk, FrameAttention, SelfSpeakerAttention
from .presets import PRESETS, Preset, get_preset

__all__ = ["ACRNN", "PRESETS", "Classifier", "CRNNTrunk", "FrameAttention", "Preset",
           "SSACRNN", "SSAOutput", "SelfSpeakerAttention", "forward_flops", "get_preset",
           "model_from_config"]
