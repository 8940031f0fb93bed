"""ACRNN (Chen et al. 2018, as re-implemented by the paper) and SSA-CRNN (the paper's model)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..data.segments import SEGMENT_FRAMES
from .layers import Classifier, CRNNTrunk, FrameAttention, SelfSpeakerAttention
from .presets import Preset, get_preset


class ModelOutput(NamedTuple):
    """What every model returns: ACRNN fills the emotion fields and leaves the speaker fields
    None; SSA-CRNN fills all six. Callers read the fields they need, whatever the model."""

    emotion_logits: torch.Tensor  # (B, n_classes)
    speaker_logits: torch.Tensor | None  # (B, n_speakers), SSA-CRNN
    alpha_em: torch.Tensor  # (B, T) attention weights on the emotion frames (SSA for SSA-CRNN)
    alpha_sp: torch.Tensor | None  # (B, T) SSA weights on the speaker frames, SSA-CRNN
    z_em: torch.Tensor  # (B, embedding) emotion embedding (input of the emotion classifier)
    z_sp: torch.Tensor | None  # (B, embedding) speaker embedding, SSA-CRNN


# A stable name for the output type in torch.export's serialised programs (torch.export.save).
torch.utils._pytree._register_namedtuple(ModelOutput,
                                         serialized_type_name="ssa_fast.models.ModelOutput")


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class ACRNN(nn.Module):
    """(B, 3, T0, n_mels) -> ``ModelOutput`` (logits (B, n_classes), frame attention, emotion
    embedding; no speaker fields). design.md section 4.

    ``l1_constraint=True`` gives ACRNN-r: call :meth:`project_` with the step's output after
    every optimiser step; ``logit_scale`` / ``learn_logit_scale`` scale its logits (see
    `Classifier`).
    """

    speaker_attentive = False  # (models/registry.py: what callers ask instead of the type)

    def __init__(self, n_classes: int, preset: str | Preset = "paper", *,
                 pool: tuple[int, int] | None = None, l1_constraint: bool = False,
                 n_mels: int = 40, dropout: float | None = None, backend: str | None = None,
                 logit_scale: float = 1.0, learn_logit_scale: bool = False):
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        self.preset = get_preset(preset, pool=pool, dropout=dropout)
        self.config = dict(n_classes=n_classes, preset=self.preset.to_dict(),
                           l1_constraint=l1_constraint, n_mels=n_mels,
                           logit_scale=logit_scale, learn_logit_scale=learn_logit_scale)
        p = self.preset
        d = 2 * p.lstm_hidden
        self.trunk = CRNNTrunk(p, n_mels)
        self.attention = FrameAttention(d)
        self.embed = nn.Linear(d, p.embedding)
        self.act = nn.LeakyReLU(p.leaky_slope)
        self.classifier = Classifier(p.embedding, n_classes, l1_constraint, backend,
                                     logit_scale, learn_logit_scale)

    @property
    def emotion_classifier(self) -> Classifier:
        """The classifier of the model's classes (the same name as SSACRNN's)."""
        return self.classifier

    def head(self, h: torch.Tensor):
        """Steps 7-9 on the BLSTM output h (B, T, d): (logits, alpha, embedding)."""
        c, alpha = self.attention(h)
        z = self.act(self.embed(c))
        return self.classifier(z), alpha, z

    def forward(self, x: torch.Tensor) -> ModelOutput:
        logits, alpha, z = self.head(self.trunk(x))
        return ModelOutput(logits, None, alpha, None, z, None)

    def project_(self, out: ModelOutput, gather=_identity) -> None:
        """The L1 projection of ACRNN-r (a no-op for ACRNN), relative to the classifier inputs
        of the step's output ``out``; ``gather`` collects them over processes (torchrun)."""
        if self.classifier.l1_constraint:
            self.classifier.project_(gather(out.z_em.detach()))


class SSACRNN(nn.Module):
    """SSA-CRNN (design.md section 5): a speaker ACRNN C_sp and an emotion CRNN C_em whose
    attention is Self Speaker Attention over its own BLSTM output and C_sp's.

    Train with CE(emotion) + lambda * CE(speaker); the emotion loss reaches C_sp through SSA.
    ``l1_constraint`` applies the L1 projection to the emotion classifier (SSA-CRNN-r);
    ``l1_constraint_speaker`` to the speaker classifier too [choice: off]. ``logit_scale`` /
    ``learn_logit_scale`` scale the constrained emotion classifier's logits (see `Classifier`).
    """

    speaker_attentive = True

    def __init__(self, n_emotions: int, n_speakers: int, preset: str | Preset = "paper", *,
                 segment_frames: int = SEGMENT_FRAMES, combine: str = "concat",
                 scale: float | None = None, pool: tuple[int, int] | None = None,
                 l1_constraint: bool = True, l1_constraint_speaker: bool = False, n_mels: int = 40,
                 dropout: float | None = None, backend: str | None = None,
                 logit_scale: float = 1.0, learn_logit_scale: bool = False):
        super().__init__()
        if n_emotions < 2 or n_speakers < 2:
            raise ValueError(f"need >= 2 emotions and >= 2 speakers, got {n_emotions}, "
                             f"{n_speakers}")
        self.preset = get_preset(preset, pool=pool, dropout=dropout)
        p = self.preset
        self.config = dict(n_emotions=n_emotions, n_speakers=n_speakers,
                           preset=p.to_dict(), segment_frames=segment_frames, combine=combine,
                           scale=scale, l1_constraint=l1_constraint,
                           l1_constraint_speaker=l1_constraint_speaker, n_mels=n_mels,
                           logit_scale=logit_scale, learn_logit_scale=learn_logit_scale)
        d = 2 * p.lstm_hidden
        T = segment_frames // p.pool[0]
        if T < 1:
            raise ValueError(f"segment_frames={segment_frames} is shorter than the time pool")
        self.segment_frames = segment_frames
        # (a constrained speaker classifier takes the emotion classifier's logit scale: at
        # eq. 8's literal scale it would barely learn, as the emotion one)
        self.speaker = ACRNN(n_speakers, p, l1_constraint=l1_constraint_speaker, n_mels=n_mels,
                             backend=backend, **(dict(logit_scale=logit_scale,
                                                      learn_logit_scale=learn_logit_scale)
                                                 if l1_constraint_speaker else {}))
        self.emotion_trunk = CRNNTrunk(p, n_mels)
        self.ssa = SelfSpeakerAttention(T, d, combine, scale, backend)
        self.emotion_embed = nn.Linear(self.ssa.out_dim, p.embedding)
        self.act = nn.LeakyReLU(p.leaky_slope)
        self.emotion_classifier = Classifier(p.embedding, n_emotions, l1_constraint, backend,
                                             logit_scale, learn_logit_scale)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        if x.shape[2] != self.segment_frames:
            raise ValueError(f"SSACRNN was built for segments of {self.segment_frames} frames "
                             f"(w_q has one weight per pooled frame), got input {tuple(x.shape)}")
        h_sp = self.speaker.trunk(x)
        speaker_logits, _, z_sp = self.speaker.head(h_sp)
        h_em = self.emotion_trunk(x)
        c, alpha_em, alpha_sp = self.ssa(h_em, h_sp)
        z_em = self.act(self.emotion_embed(c))
        return ModelOutput(self.emotion_classifier(z_em), speaker_logits, alpha_em, alpha_sp,
                           z_em, z_sp)

    def project_(self, out: ModelOutput, gather=_identity) -> None:
        """The L1 projection of the constrained classifiers, relative to their inputs in the
        step's output ``out`` (see ACRNN.project_)."""
        if self.emotion_classifier.l1_constraint:
            self.emotion_classifier.project_(gather(out.z_em.detach()))
        if self.speaker.classifier.l1_constraint:
            self.speaker.classifier.project_(gather(out.z_sp.detach()))


def model_from_config(config: dict, backend: str | None = None) -> nn.Module:
    """Rebuild an ACRNN or SSACRNN from its ``.config`` (as stored in checkpoints)."""
    c = dict(config)
    preset = get_preset(c.pop("preset"))
    if "n_emotions" in c:
        return SSACRNN(c.pop("n_emotions"), c.pop("n_speakers"), preset, backend=backend, **c)
    return ACRNN(c.pop("n_classes"), preset, backend=backend, **c)
