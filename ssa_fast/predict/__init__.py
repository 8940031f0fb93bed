"""The prediction API: the emotion of audio with a trained model, from Python.

::

    from ssa_fast import EmotionClassifier

    clf = EmotionClassifier.from_checkpoint("runs/x/best.pt", device="cpu")
    p = clf.classify_file("talk.wav")          # p.label, p.probabilities, p.segments
    ps = clf.classify_batch([wave_a, wave_b], sample_rate=22050)

Everything between the audio and the answer comes from the checkpoint: the sample rate and
feature parameters, the normalisation statistics of the training speakers, the segment length
and the pooling of segments into an utterance. A speaker seen in training is normalised with its
training statistics (pass its name); any other audio with its own statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

__all__ = ["EmotionClassifier", "Prediction", "SegmentPrediction"]


@dataclass(frozen=True)
class SegmentPrediction:
    """One segment of an utterance: its place in seconds and its own class probabilities."""

    start: float
    end: float
    label: str
    probabilities: dict[str, float]
    frames: int  # feature frames in the segment (10 ms each by default)


@dataclass(frozen=True)
class Prediction:
    """The emotion of one utterance (or file) and how it was reached."""

    label: str
    probabilities: dict[str, float]
    segments: list[SegmentPrediction]
    # "speaker" (the training statistics of a known speaker) or "utterance" (its own statistics)
    normalisation: str
    # SSA models, when asked: per segment the attention over its own frames and the speaker's
    attention: dict[str, np.ndarray] | None = field(default=None, repr=False)


class EmotionClassifier:
    """A trained ACRNN / SSA-CRNN checkpoint (``best.pt``) ready to classify audio."""

    def __init__(self, trained):
        self._tm = trained
        self._front_end = None  # the checkpoint's LogMelDelta, made on first use

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu"):
        """Load a ``best.pt`` written by ``ssa-fast train`` / ``cv`` (``weights_only`` load)."""
        from .engine import load_trained

        return cls(load_trained(path, device))

    @property
    def classes(self) -> list[str]:
        return list(self._tm.classes)

    @property
    def speakers(self) -> list[str]:
        """Speakers whose training statistics the checkpoint holds."""
        return sorted(self._tm.normaliser.stats)

    @property
    def sample_rate(self) -> int:
        return self._tm.features.sample_rate

    @property
    def is_ssa(self) -> bool:
        return self._tm.is_ssa

    @property
    def model_name(self) -> str:
        """The model it is: "acrnn", "acrnn-r", "ssa-crnn" or "ssa-crnn-r"."""
        return str(self._tm.config.get("model", "ssa-crnn-r" if self.is_ssa else "acrnn"))

    @property
    def frame_seconds(self) -> float:
        """Seconds per feature frame (the hop)."""
        return self._tm.features.frame_seconds

    @property
    def attention_frame_seconds(self) -> float:
        """Seconds per attention weight (a feature frame times the model's time pooling)."""
        return self.frame_seconds * self._tm.model.preset.pool[0]

    def _known(self, speaker: str | None) -> str | None:
        return speaker if speaker in self._tm.normaliser.stats else None

    def _prediction(self, logp: torch.Tensor, lengths: Sequence[int], probs: torch.Tensor,
                    speaker: str | None, attention: dict | None) -> Prediction:
        classes = self._tm.classes
        hop_s = self.frame_seconds
        segments, start = [], 0
        for lp, n in zip(logp, lengths, strict=True):
            p = lp.exp()
            segments.append(SegmentPrediction(
                start * hop_s, (start + int(n)) * hop_s, classes[int(p.argmax())],
                dict(zip(classes, map(float, p), strict=True)), int(n)))
            start += int(n)
        return Prediction(classes[int(probs.argmax())],
                          dict(zip(classes, map(float, probs), strict=True)), segments,
                          "speaker" if self._known(speaker) else "utterance", attention)

    def classify_file(self, path: str | Path, speaker: str | None = None, *,
                      attention: bool = False, progress: bool = False) -> Prediction:
        """Classify one audio file of any length (streamed: memory does not grow with it)."""
        from .engine import classify_file

        out = classify_file(self._tm, path, self._known(speaker), progress=progress,
                            keep_attention=attention)
        att = ({k: out[k].numpy() for k in ("alpha_em", "alpha_sp")}
               if attention and "alpha_em" in out else None)
        return self._prediction(out["logp"], out["lengths"].tolist(), out["probabilities"],
                                speaker, att)

    def plot_attention(self, prediction: Prediction, path: str | Path) -> Path:
        """The SSA attention curves of a Prediction made with ``attention=True`` (the longest
        segment; each segment titled with its predicted class), written atomically to ``path``
        (PNG, PDF or SVG by its suffix; PNG otherwise)."""
        from ..reports.experiment import FORMATS, plot_attention

        if prediction.attention is None:
            raise ValueError("the prediction holds no attention weights: classify with "
                             "attention=True, with an SSA model")
        path = Path(path)
        fmt = path.suffix[1:].lower() if path.suffix[1:].lower() in FORMATS else "png"
        data = {self.model_name: {
            "alpha_em": torch.from_numpy(prediction.attention["alpha_em"]),
            "alpha_sp": torch.from_numpy(prediction.attention["alpha_sp"]),
            "predicted": torch.tensor([self.classes.index(s.label)
                                       for s in prediction.segments]),
            "lengths": torch.tensor([s.frames for s in prediction.segments])}}
        return plot_attention(data, path.parent, self.classes, name=path.name, fmt=fmt,
                              seconds_per_frame=self.attention_frame_seconds,
                              hop_seconds=self.frame_seconds)

    def features(self, wave, sample_rate: int) -> torch.Tensor:
        """The model's 3-D log-Mel ``(3, T, n_mels)`` of one waveform (mono or channels x
        samples, any sample rate)."""
        from ..audio.io import mono, resample

        if self._front_end is None:
            self._front_end = self._tm.features.module()
        y = resample(mono(wave, "waveform"), int(sample_rate), self.sample_rate)
        return self._front_end(torch.from_numpy(y))

    def classify_batch(self, waves: Sequence, sample_rate: int = 16000,
                       speakers: Sequence[str | None] | None = None, *,
                       attention: bool = False) -> list[Prediction]:
        """Classify in-memory waveforms (numpy arrays or tensors, mono or channels x samples)
        recorded at ``sample_rate``; ``speakers[i]`` names a training speaker or is None."""
        from .engine import classify

        if not isinstance(sample_rate, int) or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
        waves = list(waves)
        speakers = [None] * len(waves) if speakers is None else list(speakers)
        if len(speakers) != len(waves):
            raise ValueError(f"{len(waves)} waveforms but {len(speakers)} speakers")
        if not waves:
            return []
        feats = [self.features(w, sample_rate) for w in waves]
        probs, segs, out = classify(self._tm, feats, [self._known(s) for s in speakers])
        result = []
        for i, spk in enumerate(speakers):
            rows = (segs.utterance == i).nonzero().flatten()
            att = ({k: out[k][rows].numpy() for k in ("alpha_em", "alpha_sp")}
                   if attention and "alpha_em" in out else None)
            result.append(self._prediction(out["logp"][rows], segs.lengths[rows].tolist(),
                                           probs[i], spk, att))
        return result

    def classify(self, wave, sample_rate: int = 16000, speaker: str | None = None, *,
                 attention: bool = False) -> Prediction:
        """Classify one in-memory waveform."""
        return self.classify_batch([wave], sample_rate, [speaker], attention=attention)[0]
