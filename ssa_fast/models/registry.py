"""The models by name: the one place that says which models exist, how they are shown, what they
need and how they are built. The command line, training, reports, the demo and the benchmarks
all read it. Torch-free: the command line's parser reads the names without importing torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..data.constants import SEGMENT_FRAMES

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    name: str  # the name on the command line and in files ("ssa-crnn-r")
    display: str  # the name in tables and figures ("SSA-CRNN-r")
    speaker_attentive: bool  # SSA-CRNN: needs a speaker for every utterance (its speaker loss)
    constrained: bool  # the "-r" models: the L1 projection of eq. 8 after every step

    def ignored_options(self) -> tuple[str, ...]:
        """The training options (``TrainConfig`` fields) this model does not use: the logit
        scale without the L1 constraint, the SSA options without SSA (as :meth:`build`
        ignores them)."""
        out = []
        if not self.constrained:
            out += ["logit_scale", "learn_logit_scale"]
        if not self.speaker_attentive:
            out += ["speaker_weight", "combine", "ssa_scale"]
        if not (self.constrained and self.speaker_attentive):
            out.append("constrain_speaker")
        return tuple(out)

    def build(self, n_classes: int, n_speakers: int, *, preset="paper",
              segment_frames: int = SEGMENT_FRAMES, n_mels: int = 40, backend: str | None = None,
              logit_scale: float = 1.0, learn_logit_scale: bool = False,
              pool: tuple[int, int] | None = None, dropout: float | None = None,
              combine: str = "concat", ssa_scale: float | None = None,
              constrain_speaker: bool = False) -> nn.Module:
        """The model, untrained. ``logit_scale`` applies to the constrained models only (the
        others ignore it); ``pool`` and ``dropout`` override the preset's; ``combine`` and
        ``ssa_scale`` are the SSA models', ``constrain_speaker`` SSA-CRNN-r's (its speaker
        classifier takes the logit scale; the others ignore them)."""
        from .acrnn import ACRNN, SSACRNN

        scale = dict(logit_scale=logit_scale, learn_logit_scale=learn_logit_scale) \
            if self.constrained else {}
        if self.speaker_attentive:
            return SSACRNN(n_classes, max(n_speakers, 2), preset, segment_frames=segment_frames,
                           l1_constraint=self.constrained, n_mels=n_mels, backend=backend,
                           pool=pool, dropout=dropout, combine=combine, scale=ssa_scale,
                           l1_constraint_speaker=constrain_speaker and self.constrained,
                           **scale)
        return ACRNN(n_classes, preset, l1_constraint=self.constrained, n_mels=n_mels,
                     backend=backend, pool=pool, dropout=dropout, **scale)


MODELS: dict[str, ModelSpec] = {s.name: s for s in (
    ModelSpec("acrnn", "ACRNN", speaker_attentive=False, constrained=False),
    ModelSpec("acrnn-r", "ACRNN-r", speaker_attentive=False, constrained=True),
    ModelSpec("ssa-crnn", "SSA-CRNN", speaker_attentive=True, constrained=False),
    ModelSpec("ssa-crnn-r", "SSA-CRNN-r", speaker_attentive=True, constrained=True),
)}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)
# the paper's Table 1 (what `cv` and the demo run unless told otherwise)
PAPER_MODELS: tuple[str, ...] = ("acrnn", "acrnn-r", "ssa-crnn-r")


def model_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"model must be one of {MODEL_NAMES}, got {name!r}") from None


def display_name(name: str) -> str:
    """The display name of a model name; other strings unchanged."""
    spec = MODELS.get(name)
    return spec.display if spec else name
