"""Using a trained model: load a ``best.pt`` written by training, classify features of whole
utterances (normalised with the training statistics, cut into segments, pooled per utterance)
and audio files of any length; train/evaluation.py scores a labelled corpus with them. Nothing
here imports train/: the checkpoint's layout is models/checkpoint.py's, the scorer and the
pooling are models/scoring.py's.

Speaker normalisation uses the training statistics of a speaker seen in training and falls back to
the utterance's own statistics for an unseen one (design.md section 3).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..audio.io import AudioError
from ..data.segments import (
    MIN_TAIL,
    FrameStats,
    Normaliser,
    Segments,
    Stats,
    make_segments,
    segment_bounds,
)
from ..features.config import FeatureConfig
from ..models import model_from_config
from ..models.checkpoint import read_best
from ..models.scoring import score_batch, scoring_batch, utterance_probabilities

# what a prediction keeps of the scorer's parts, per segment (models.scoring.score_batch)
SEGMENT_OUTPUTS = ("logp", "alpha_em", "alpha_sp")


@dataclass
class TrainedModel:
    model: torch.nn.Module
    classes: list[str]
    speakers: list[str]
    normaliser: Normaliser
    segment_frames: int
    feature_params: dict
    pooling: str
    config: dict  # the TrainConfig the model was trained with
    # (feature_params: FeatureConfig.to_dict() of the features it was trained on, all fields)
    # what produced it (fingerprint.py): identity (corpus, fold layout, configs), the listing
    # keys of its training utterances and the keys ({kind: keys}) of every utterance it used
    # ({"listing": ...} in files that stored only the former); None in checkpoints written
    # before they were stored (models/checkpoint.py)
    identity: dict | None = None
    train_utterances: list[str] | None = None
    used_utterances: dict | None = None
    # the keys of the utterances that chose its epoch, not among the used ones (None: not known)
    epoch_utterances: dict | None = None

    @property
    def fold_layout(self) -> dict | None:
        return (self.identity or {}).get("folds")

    @property
    def features(self) -> FeatureConfig:
        return FeatureConfig.from_dict(self.feature_params)

    @property
    def is_ssa(self) -> bool:
        return self.model.speaker_attentive


def load_trained(path: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    """A model checkpoint written by training (``best.pt``), ready for inference; a missing
    file or one that is not such a checkpoint raises as :func:`models.checkpoint.read_best`."""
    ckpt = read_best(path)
    model = model_from_config(ckpt.model_config)
    model.load_state_dict(ckpt.model)
    model.to(device).eval()
    return TrainedModel(model, ckpt.classes, ckpt.speakers,
                        Normaliser.from_state_dict(ckpt.normaliser), ckpt.segment_frames,
                        ckpt.feature_params, ckpt.pooling, ckpt.config, ckpt.identity,
                        ckpt.train_utterances, ckpt.used_utterances, ckpt.epoch_utterances)


def _device(trained: TrainedModel) -> torch.device:
    return next(trained.model.parameters()).device


def _score(trained: TrainedModel, x: torch.Tensor, parts: dict, attention: bool,
           bf16: bool = False) -> None:
    """Score one batch of segments (training's own scorer); keep the attention weights of an
    SSA model when asked (the prediction API returns both SSA weights or none)."""
    score_batch(trained.model, x, parts, keep_outputs=attention and trained.is_ssa, bf16=bf16)


def segment_outputs(trained: TrainedModel, segs: Segments, batch: int | None = None) -> dict:
    """Per-segment log-probabilities (S, K), and for SSA models the attention weights;
    ``batch`` segments a forward pass (None: scoring_batch's for the model's device)."""
    parts: dict[str, list] = {}
    batch = scoring_batch(_device(trained), batch)
    for i in range(0, len(segs), batch):
        _score(trained, segs.x[i:i + batch], parts, attention=True)
    return {k: torch.cat(v) for k, v in parts.items()}


def classify(trained: TrainedModel, features: list[torch.Tensor], speakers: list[str | None],
             batch: int | None = None) -> tuple[torch.Tensor, Segments, dict]:
    """Class probabilities (U, K) of whole utterances from their (3, T, M) features.

    ``speakers[i]`` is the utterance's speaker if it was seen in training (its training
    statistics normalise it); None or an unseen name uses the utterance's own statistics.
    Returns (probabilities, the segments, segment_outputs)."""
    names = [s if s in trained.normaliser.stats else None for s in speakers]
    index = {s: i for i, s in enumerate(trained.speakers)}
    segs = make_segments(features, [0] * len(features), names, trained.normaliser, index,
                         segment_frames=trained.segment_frames)
    out = segment_outputs(trained, segs, batch)
    probs = utterance_probabilities(out["logp"], segs.utterance, len(features), trained.pooling)
    return probs, segs, out


def _file_blocks(trained: TrainedModel, path: str | Path, block_frames: int, progress: bool,
                 desc: str):
    """The model's features of a file, streamed in blocks of ``block_frames`` frames (with a
    progress bar when asked: its length comes from the file's header where it can be read)."""
    import soundfile as sf
    from tqdm import tqdm

    from ..features.stream import stream_features

    features = trained.features
    try:
        blocks = int(sf.info(str(path)).duration / features.frame_seconds) // block_frames + 1
    except Exception:  # stream_features reports unreadable files with a clear error
        blocks = None
    return tqdm(stream_features(path, features, block_frames=block_frames), total=blocks,
                desc=desc, unit="block", leave=False, disable=None if progress else True)


def _stream_segments(blocks, normaliser: Normaliser, stats: Stats, segment_frames: int):
    """(segment (3, segment_frames, M), valid frames) of streamed feature blocks: normalised with
    ``stats``, cut as in training (segment_bounds: non-overlapping, the tail kept when it is long
    enough or the only segment) and zero-padded after normalisation."""
    L, carry, n = segment_frames, None, 0
    for f in blocks:
        z = normaliser.apply(f, stats)
        carry = z if carry is None else torch.cat([carry, z], dim=1)
        while carry.shape[1] >= L:
            yield carry[:, :L], L
            carry, n = carry[:, L:], n + 1
    if carry is not None and carry.shape[1] > 0 and (n == 0 or carry.shape[1] >= MIN_TAIL):
        seg = torch.zeros(3, L, carry.shape[2], dtype=carry.dtype)
        seg[:, :carry.shape[1]] = carry
        yield seg, carry.shape[1]


def classify_file(trained: TrainedModel, path: str | Path, speaker: str | None = None, *,
                  block_frames: int = 6000, batch: int | None = None, progress: bool = False,
                  keep_attention: bool = False, bf16: bool = False) -> dict:
    """Classify one audio file of any length in bounded memory: features are streamed in blocks
    of ``block_frames`` (a first streamed pass gathers the utterance statistics when the speaker
    was not seen in training), cut into segments as in training and scored ``batch`` at a time.

    Returns {"probabilities" (K,), "logp" (S, K) per segment, "lengths" (S,), and with
    keep_attention for SSA models "alpha_em" / "alpha_sp" (S, T)}; the same numbers as
    :func:`classify` on the whole file."""
    name = Path(path).name
    batch = scoring_batch(_device(trained), batch)
    stats = trained.normaliser.stats_for(speaker)
    if stats is None:  # the utterance's own statistics: one streamed pass first
        acc = FrameStats()
        for f in _file_blocks(trained, path, block_frames, progress, f"{name}: statistics"):
            acc.add(f)
        stats = acc.stats(trained.normaliser.eps)
    parts: dict[str, list] = {}
    lengths: list[int] = []
    segments = _stream_segments(_file_blocks(trained, path, block_frames, progress, name),
                                trained.normaliser, stats, trained.segment_frames)
    while chunk := list(itertools.islice(segments, batch)):
        _score(trained, torch.stack([seg for seg, _ in chunk]), parts, keep_attention, bf16)
        lengths += [n for _, n in chunk]
    # (the scorer's other parts stay out: an SSA model's per-segment speaker guesses, under the
    # key "speaker", replaced the training speaker whose statistics a streamed file took)
    res = {k: torch.cat(v) for k, v in parts.items() if k in SEGMENT_OUTPUTS}
    res["probabilities"] = utterance_probabilities(
        res["logp"], torch.zeros(len(lengths), dtype=torch.long), 1, trained.pooling)[0]
    res["lengths"] = torch.tensor(lengths)
    return res


# What is too short or too quiet to classify [choice]: under a quarter of a second (shorter than
# a syllable: a 1-sample or 10 ms file gave every such input the same confident label), or
# samples that swing less than one 16-bit step (digital silence, whose features are the log floor
# everywhere, or a constant offset: the silence of a recorder with a DC bias, which got a
# confident label too). The swing is half the peak-to-peak range, the peak of a signal without
# its offset, measured at the audio's own rate (resampled, a constant rings at its edges).
MIN_SECONDS = 0.25
SILENCE_PEAK = 2.0 ** -15


def unclassifiable(duration: float, peak: float) -> tuple[str, str] | None:
    """(status, reason) of audio with nothing to classify, None for audio to classify;
    ``peak`` is the audio's swing (audio.io.swing)."""
    if duration < MIN_SECONDS:
        return "too short", (f"{1000 * duration:.3g} ms of audio, at least "
                             f"{1000 * MIN_SECONDS:g} ms is needed to classify")
    if peak < SILENCE_PEAK:
        return "silent", (f"digital silence (the samples swing {peak:.2g} about a constant "
                          f"level, below one 16-bit step {SILENCE_PEAK:.2g})")
    return None


@dataclass
class Item:
    """One input of the batched engine, as a loader worker hands it over: the waveform
    (float32 mono at the model's rate) of a file held whole, or ``stream`` for a file too long
    to hold (classified block by block by :func:`classify_file`), or the reason it failed."""

    index: int
    name: str  # the file as given (or "waveform i")
    # a numpy array from a worker: pickled through the worker's pipe, not shared by file
    # descriptor (a sharing worker prints a traceback when Ctrl-C ends the main process first)
    wave: np.ndarray | torch.Tensor | None = None
    speaker: str | None = None
    duration: float = 0.0  # seconds at the model's sample rate
    peak: float = 0.0  # half the peak-to-peak range of the samples (swing)
    error: str | None = None
    stream: bool = False
    stamp: tuple[int, int] | None = None  # the file's size and mtime before it was read

    def pin_memory(self) -> Item:  # (the DataLoader's pin_memory thread calls this)
        if self.wave is not None:
            self.wave = torch.as_tensor(self.wave).pin_memory()
        return self


@dataclass
class _Pending:
    """An input on its way through the engine: its segments' outputs as they are scored."""

    item: Item
    status: str = "ok"
    reason: str | None = None
    left: int = 0  # segments not yet scored
    lengths: list[int] = field(default_factory=list)
    parts: dict = field(default_factory=dict)  # key -> list of (1, ...) rows, in segment order
    result: dict | None = None  # a streamed file's classify_file result


def _on(st: Stats, device: torch.device) -> Stats:
    return Stats(st.mean.to(device), st.std.to(device))


def classify_items(trained: TrainedModel, items: Iterable[Item], *,
                   batch_size: int | None = None, bf16: bool = False,
                   keep_attention: bool = False, progress_blocks: bool = False) -> Iterator[dict]:
    """Classify a stream of inputs with segments of many inputs scored together, ``batch_size``
    segments a forward pass (None: scoring_batch's, 32 on the CPU and 128 on a GPU); results
    come out in input order as soon as an input's last segment is scored.

    Each waveform is copied to the model's device (``non_blocking`` from pinned memory), its
    features computed there (the fused log-Mel kernel), normalised (a known speaker's training
    statistics, else its own), cut into segments as in training and queued; the queue is
    scored whenever it holds ``batch_size`` segments (and at the end), under bf16 autocast when
    ``bf16``. A ``stream`` item (a long file) is classified by :func:`classify_file` in bounded
    memory. The same numbers as :func:`classify` / :func:`classify_file` input by input.

    Yields {"index", "file", "status" ("ok", "too short", "silent", "failed"), "reason",
    "duration", "normalisation", "speaker" (the training speaker whose statistics normalised it,
    or None)} and, for "ok", "logp" (S, K), "lengths" (S,), "probabilities"
    (K,) and with ``keep_attention`` for SSA models "alpha_em" / "alpha_sp" (S, T)."""
    device = _device(trained)
    batch_size = scoring_batch(device, batch_size)
    front_end = None
    keep = keep_attention and trained.is_ssa
    L = trained.segment_frames
    stats_on_device: dict[str, Stats] = {}
    order: deque[_Pending] = deque()  # inputs in input order, not yet yielded
    queue: list[torch.Tensor] = []  # segments waiting for a forward pass
    owners: list[_Pending] = []

    def run(n: int) -> None:
        parts: dict[str, list] = {}
        _score(trained, torch.stack(queue[:n]), parts, keep, bf16)
        out = {k: torch.cat(v) for k, v in parts.items()}
        for j, owner in enumerate(owners[:n]):
            for k in SEGMENT_OUTPUTS:
                if k in out:
                    owner.parts.setdefault(k, []).append(out[k][j:j + 1])
            owner.left -= 1
        del queue[:n], owners[:n]

    def finish(p: _Pending) -> dict:
        it = p.item
        normalisation, speaker = trained.normaliser.whose(it.speaker)
        res = {"index": it.index, "file": it.name, "status": p.status, "reason": p.reason,
               "duration": it.duration, "normalisation": normalisation, "speaker": speaker,
               "stamp": it.stamp}
        if p.status != "ok":
            return res
        if p.result is not None:  # (streamed: classify_file's result keys alone)
            res.update({k: v for k, v in p.result.items()
                        if k in (*SEGMENT_OUTPUTS, "lengths", "probabilities")})
            return res
        res.update({k: torch.cat(v) for k, v in p.parts.items()})
        res["lengths"] = torch.tensor(p.lengths)
        res["probabilities"] = utterance_probabilities(
            res["logp"], torch.zeros(len(p.lengths), dtype=torch.long), 1, trained.pooling)[0]
        return res

    for it in items:
        p = _Pending(it)
        order.append(p)
        verdict = None if it.error else unclassifiable(it.duration, it.peak)
        if it.error:
            p.status, p.reason = "failed", it.error
        elif verdict:
            p.status, p.reason = verdict
        elif it.stream:
            try:
                p.result = classify_file(trained, it.name, it.speaker, batch=batch_size,
                                         progress=progress_blocks, keep_attention=keep,
                                         bf16=bf16)
            except AudioError as exc:  # (a long file is read only now)
                p.status, p.reason = "failed", str(exc)
        else:
            if front_end is None:
                front_end = trained.features.module().to(device)
            f = front_end(torch.as_tensor(it.wave).to(device, non_blocking=True))  # (3, T, M)
            st = trained.normaliser.stats_for(it.speaker)
            if st is None:
                st = FrameStats().add(f).stats(trained.normaliser.eps)
            else:  # (moved to the device once per speaker)
                if it.speaker not in stats_on_device:
                    stats_on_device[it.speaker] = _on(st, device)
                st = stats_on_device[it.speaker]
            z = Normaliser.apply(f, st)
            # the segments of segment_bounds (consecutive, the last zero-padded) in one view
            bounds = segment_bounds(f.shape[1], L)
            T = len(bounds) * L
            z = torch.nn.functional.pad(z[:, :T], (0, 0, 0, T - min(T, z.shape[1])))
            queue += z.view(3, len(bounds), L, -1).transpose(0, 1).unbind(0)
            owners += [p] * len(bounds)
            p.lengths += [length for _, length in bounds]
            p.left += len(bounds)
        while len(queue) >= batch_size:
            run(batch_size)
        while order and order[0].left == 0:
            yield finish(order.popleft())
    while queue:
        run(min(batch_size, len(queue)))
    while order:
        yield finish(order.popleft())
