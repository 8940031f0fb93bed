"""The prediction API: the emotion of audio with a trained model, from Python.

::

    from ssa_fast import EmotionClassifier

    clf = EmotionClassifier.from_checkpoint("runs/x/best.pt", device="cpu")
    p = clf.classify_file("talk.wav")          # p.label, p.probabilities, p.segments
    ps = clf.classify_batch([wave_a, wave_b], sample_rate=22050)
    for p in clf.classify_files(["archive/", "more.csv"], batch_size=256):
        print(p.file, p.status, p.label)       # in input order; failures carry their reason

Everything between the audio and the answer comes from the checkpoint: the sample rate and
feature parameters, the normalisation statistics of the training speakers, the segment length
and the pooling of segments into an utterance. A speaker seen in training is normalised with its
training statistics (pass its name); any other audio with its own statistics.

Audio with nothing to classify (shorter than MIN_SECONDS, or digital silence) gets no label: its
``status`` says why ("too short", "silent") and ``label`` is None.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import _warn
from ..data.corpus import nfc
from .engine import MIN_SECONDS, SILENCE_PEAK

__all__ = ["MIN_SECONDS", "SILENCE_PEAK", "EmotionClassifier", "Prediction", "SegmentPrediction"]


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
    """The emotion of one utterance (or file) and how it was reached.

    ``status`` is "ok" (classified), "too short" or "silent" (nothing to classify: ``label`` is
    None, ``probabilities`` and ``segments`` are empty, ``reason`` says why) or, from
    ``classify_files``, "failed" (the file could not be read; ``reason`` names it)."""

    label: str | None
    probabilities: dict[str, float]
    segments: list[SegmentPrediction]
    # "speaker" (the training statistics of a known speaker), "global" (those of every training
    # utterance: a checkpoint trained so) or "utterance" (its own statistics)
    normalisation: str
    # SSA models, when asked: per segment the attention over its own frames and the speaker's
    attention: dict[str, np.ndarray] | None = field(default=None, repr=False)
    status: str = "ok"
    reason: str | None = None
    file: str | None = None  # the file, for predictions of files
    duration: float | None = None  # seconds of audio
    # the training speaker whose statistics normalised it (normalisation "speaker"), else None
    speaker: str | None = None
    # the file's (size, modification time in ns) before it was read (classify_files), else None
    stamp: tuple[int, int] | None = field(default=None, repr=False)

    @property
    def classified(self) -> bool:
        return self.status == "ok"


class EmotionClassifier:
    """A trained ACRNN / SSA-CRNN checkpoint (``best.pt``) ready to classify audio."""

    def __init__(self, trained):
        self._tm = trained
        self._front_end = None  # the checkpoint's LogMelDelta, made on first use
        self._unused_names: set[str] = set()  # speakers named that normalise nothing (said)

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
        """Speakers whose training statistics the checkpoint holds (none when it normalises
        with global or per-utterance statistics)."""
        norm = self._tm.normaliser
        return sorted(norm.stats) if norm.mode == "speaker" else []

    @property
    def normalisation(self) -> str:
        """The checkpoint's normalisation: "speaker", "global" or "utterance"."""
        return self._tm.normaliser.mode

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

    def statistics_for(self, speaker: str | None) -> tuple[str, str | None]:
        """How a file of ``speaker`` (as training read its speakers: NFC) is normalised: the
        (``normalisation``, ``speaker``) of its Prediction, e.g. ("speaker", "spk01") or
        ("utterance", None)."""
        return self._tm.normaliser.whose(speaker)

    def _known(self, speaker: str | None) -> str | None:
        """``speaker`` as training read its speakers (NFC), when the checkpoint holds its
        statistics; else None (per-utterance normalisation)."""
        speaker = nfc(speaker)
        return speaker if self._tm.normaliser.applied(speaker) == "speaker" else None

    def unused_speaker(self, speaker: str | None) -> str | None:
        """Why a speaker a caller named normalises nothing (a sentence), or None when it names
        a training speaker whose statistics normalise its files (or no speaker is named): not a
        training speaker (a typo reads as an unseen speaker), or a checkpoint without
        per-speaker statistics."""
        if not speaker or self._known(speaker) is not None:
            return None
        mode = self._tm.normaliser.mode
        if mode != "speaker":
            return (f"speaker {speaker!r}: not used, the checkpoint normalises with {mode} "
                    "statistics")
        names = self.speakers
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        return (f"speaker {speaker!r} was not in training (the checkpoint's speakers: {shown}): "
                "normalised with each utterance's own statistics")

    def _named(self, speaker: str | None) -> str | None:
        """:meth:`_known` of a speaker a caller named, saying once per name when the name
        normalises nothing (:meth:`unused_speaker`)."""
        why = self.unused_speaker(speaker)
        if why is not None and speaker not in self._unused_names:
            self._unused_names.add(speaker)
            _warn.warn(why)
        return self._known(speaker)

    def unused_speakers(self, entries, besides: str | None = None) -> dict[str, str]:
        """{speaker: why} for the distinct speakers of ``entries`` (inputs.Entry: a manifest's
        speaker column), ``besides`` left out, that normalise nothing (:meth:`unused_speaker`:
        a typo reads as an unseen speaker, normalised with each utterance's own statistics)."""
        named = dict.fromkeys(e.speaker for e in entries if e.speaker and e.speaker != besides)
        whys = {speaker: self.unused_speaker(speaker) for speaker in named}
        return {speaker: why for speaker, why in whys.items() if why is not None}

    def matched_speakers(self, entries, besides: str | None = None) -> dict[str, int]:
        """{training speaker: files} for the speakers of ``entries`` (a manifest's speaker
        column), ``besides`` left out, whose training statistics normalise their files: matched
        by name alone, so a speaker of another corpus named like a training speaker takes that
        speaker's statistics (which is why the command line says it)."""
        counts: dict[str, int] = {}
        for e in entries:
            if e.speaker and e.speaker != besides and self._known(e.speaker) is not None:
                counts[e.speaker] = counts.get(e.speaker, 0) + 1
        return counts

    def say_unused_speakers(self, entries) -> None:
        """Warn once per speaker of ``entries`` that normalises nothing (:meth:`unused_speakers`),
        as for a speaker named by a caller."""
        for speaker in self.unused_speakers(entries):
            self._named(speaker)

    def _prediction(self, res: dict, attention: bool, in_memory: bool = False) -> Prediction:
        """A Prediction of one result of the engine (engine.classify_items)."""
        normalisation = res["normalisation"]
        file = None if in_memory else res["file"]
        if res["status"] != "ok":
            return Prediction(None, {}, [], normalisation, None, res["status"], res["reason"],
                              file, res["duration"], res["speaker"], res.get("stamp"))
        classes = self._tm.classes
        hop_s = self.frame_seconds
        segments, start = [], 0
        for lp, n in zip(res["logp"], res["lengths"].tolist(), strict=True):
            p = lp.exp()
            segments.append(SegmentPrediction(  # (frames are centred: the last ends the audio)
                start * hop_s, min((start + int(n)) * hop_s, res["duration"]),
                classes[int(p.argmax())],
                dict(zip(classes, map(float, p), strict=True)), int(n)))
            start += int(n)
        probs = res["probabilities"]
        att = ({k: res[k].numpy() for k in ("alpha_em", "alpha_sp")}
               if attention and "alpha_em" in res else None)
        return Prediction(classes[int(probs.argmax())],
                          dict(zip(classes, map(float, probs), strict=True)), segments,
                          normalisation, att, "ok", None, file, res["duration"], res["speaker"],
                          res.get("stamp"))

    def classify_files(self, inputs: Sequence[str | Path] | str | Path,
                       speaker: str | None = None, *, batch_size: int | None = None,
                       num_workers: int | None = None, bf16: bool = False,
                       columns: Mapping[str, str] | None = None, attention: bool = False,
                       progress: bool = False) -> Iterator[Prediction]:
        """Classify many files: an iterator of Predictions in input order (``p.file`` names
        each), the engine of ``ssa-fast predict``.

        ``inputs``: files, folders (their audio files, recursively), manifests (.csv / .json,
        ``columns`` as in training; a speaker column names each file's speaker) and list files
        (.txt / .lst / .list, one path a line); a file named twice is classified once.
        Files are decoded and resampled by ``num_workers`` DataLoader workers (None: the cores
        but one, at most 8; 0: in this process), and the segments of many files are scored
        together, ``batch_size`` a forward pass (None: 32 on the CPU, 128 on a GPU; under bf16
        autocast with ``bf16``). Files longer than inputs.LOAD_SECONDS are streamed in bounded
        memory. A file that cannot be read comes out with status "failed" and its reason; the
        iteration goes on."""
        from .inputs import expand_inputs

        if isinstance(inputs, (str, Path)):
            inputs = [inputs]
        entries, problems = expand_inputs(list(inputs), columns, self._named(speaker))
        if problems:
            for line in problems:
                _warn.warn(line)
        self.say_unused_speakers(entries)  # (a manifest's speakers)
        return self.classify_entries(entries, batch_size=batch_size, num_workers=num_workers,
                                     bf16=bf16, attention=attention, progress=progress)

    def classify_entries(self, entries, *, batch_size: int | None = None,
                         num_workers: int | None = None, bf16: bool = False,
                         attention: bool = False, progress: bool = False,
                         progress_blocks: bool = False) -> Iterator[Prediction]:
        """classify_files of expanded inputs (inputs.Entry: path and speaker)."""
        from .engine import classify_items
        from .inputs import load_items

        device = next(self._tm.model.parameters()).device
        items = load_items(entries, self.sample_rate, num_workers=num_workers,
                           pin_memory=device.type == "cuda")
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(entries), unit="file", desc="predict", disable=None,
                       smoothing=0.1)
        hours = 0.0
        try:
            for res in classify_items(self._tm, items, batch_size=batch_size, bf16=bf16,
                                      keep_attention=attention, progress_blocks=progress_blocks):
                if bar is not None:
                    hours += res["duration"] / 3600
                    rate = hours / max(bar.format_dict["elapsed"], 1e-9)
                    bar.set_postfix_str(f"{hours:.2f} h of audio, {rate:.3f} h/s", refresh=False)
                    bar.update()
                yield self._prediction(res, attention)
        finally:
            if bar is not None:
                bar.close()

    def classify_file(self, path: str | Path, speaker: str | None = None, *,
                      attention: bool = False, progress: bool = False) -> Prediction:
        """Classify one audio file of any length (long files are streamed: memory does not grow
        with them). A file that cannot be read raises AudioError naming it."""
        from ..audio import AudioError
        from .inputs import Entry

        pred = next(self.classify_entries([Entry(str(path), self._named(speaker))],
                                          num_workers=0, attention=attention,
                                          progress_blocks=progress))
        if pred.status == "failed":
            raise AudioError(pred.reason)
        return pred

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

    def classify_batch(self, waves: Sequence, sample_rate: int,
                       speakers: Sequence[str | None] | None = None, *,
                       attention: bool = False) -> list[Prediction]:
        """Classify in-memory waveforms (numpy arrays or tensors, mono or channels x samples)
        recorded at ``sample_rate`` (required: an array does not know its rate, and one read at
        another rate is other speech); ``speakers[i]`` names a training speaker or is None."""
        from ..audio.io import mono, resample, swing
        from .engine import Item, classify_items

        if (isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Integral)
                or sample_rate <= 0):
            raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
        sample_rate = int(sample_rate)
        waves = list(waves)
        speakers = [None] * len(waves) if speakers is None else list(speakers)
        if len(speakers) != len(waves):
            raise ValueError(f"{len(waves)} waveforms but {len(speakers)} speakers")
        if not waves:
            return []
        items = []
        for i, (w, spk) in enumerate(zip(waves, speakers, strict=True)):
            y = mono(w, f"waveform {i}")
            peak = swing(y)  # (before resampling, which rings at a constant's edges)
            y = resample(y, sample_rate, self.sample_rate)
            items.append(Item(i, f"waveform {i}", torch.from_numpy(y), self._named(spk),
                              len(y) / self.sample_rate, peak))
        return [self._prediction(res, attention, in_memory=True)
                for res in classify_items(self._tm, items, keep_attention=attention)]

    def classify(self, wave, sample_rate: int, speaker: str | None = None, *,
                 attention: bool = False) -> Prediction:
        """Classify one in-memory waveform recorded at ``sample_rate``."""
        return self.classify_batch([wave], sample_rate, [speaker], attention=attention)[0]
