"""Using a trained model: load a ``best.pt`` written by training, classify features of whole
utterances (normalised with the training statistics, cut into segments, pooled per utterance)
and audio files of any length; train/evaluation.py scores a labelled corpus with them. Nothing
here imports train/: the scorer and the pooling are models/scoring.py's.

Speaker normalisation uses the training statistics of a speaker seen in training and falls back to
the utterance's own statistics for an unseen one (design.md section 3).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.segments import MIN_TAIL, FrameStats, Normaliser, Segments, Stats, make_segments
from ..features.config import FeatureConfig
from ..models import model_from_config
from ..models.scoring import load_checkpoint, score_batch, utterance_probabilities


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
    # what produced it (fingerprint.py): identity (corpus, fold layout, configs), fingerprint and
    # the keys of its training utterances; None in checkpoints written before they were stored
    identity: dict | None = None
    train_utterances: list[str] | None = None

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
    """A model checkpoint written by training (``best.pt``), ready for inference."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = load_checkpoint(path)
    except Exception as exc:  # pickle / zip errors of a file that is not a checkpoint
        first = (str(exc).splitlines() or [""])[0][:200]  # (a 0-byte file: an empty message)
        raise ValueError(f"{path}: not a checkpoint that loads with weights_only=True "
                         f"({type(exc).__name__}: {first})") from exc
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: not a model checkpoint (a {type(ckpt).__name__})")
    bundle = ckpt.get("bundle") or {}
    missing = [k for k in ("classes", "normaliser", "segment_frames") if k not in bundle]
    if "model_config" not in ckpt or missing:
        raise ValueError(f"{path}: not a model checkpoint written by `ssa-fast train` or "
                         f"`ssa-fast cv` (a best.pt); missing {missing or ['model_config']}")
    model = model_from_config(ckpt["model_config"])
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    return TrainedModel(model, list(bundle["classes"]), list(bundle.get("speakers", [])),
                        Normaliser.from_state_dict(bundle["normaliser"]),
                        int(bundle["segment_frames"]),
                        FeatureConfig.from_dict(bundle.get("feature_params")).to_dict(),
                        ckpt["config"].get("pooling", "mean"), ckpt["config"],
                        ckpt.get("identity"), ckpt.get("train_utterances"))


def _score(tm: TrainedModel, x: torch.Tensor, parts: dict, attention: bool) -> None:
    """Score one batch of segments (training's own scorer); keep the attention weights of an
    SSA model when asked (the prediction API returns both SSA weights or none)."""
    score_batch(tm.model, x, parts, keep_outputs=attention and tm.is_ssa)


def segment_outputs(tm: TrainedModel, segs: Segments, batch: int = 128) -> dict:
    """Per-segment log-probabilities (S, K), and for SSA models the attention weights."""
    parts: dict[str, list] = {}
    for i in range(0, len(segs), batch):
        _score(tm, segs.x[i:i + batch], parts, attention=True)
    return {k: torch.cat(v) for k, v in parts.items()}


def classify(tm: TrainedModel, features: list[torch.Tensor], speakers: list[str | None],
             batch: int = 128) -> tuple[torch.Tensor, Segments, dict]:
    """Class probabilities (U, K) of whole utterances from their (3, T, M) features.

    ``speakers[i]`` is the utterance's speaker if it was seen in training (its training
    statistics normalise it); None or an unseen name uses the utterance's own statistics.
    Returns (probabilities, the segments, segment_outputs)."""
    names = [s if s in tm.normaliser.stats else None for s in speakers]
    index = {s: i for i, s in enumerate(tm.speakers)}
    segs = make_segments(features, [0] * len(features), names, tm.normaliser, index,
                         segment_frames=tm.segment_frames)
    out = segment_outputs(tm, segs, batch)
    probs = utterance_probabilities(out["logp"], segs.utterance, len(features), tm.pooling)
    return probs, segs, out


def _file_blocks(tm: TrainedModel, path: str | Path, block_frames: int, progress: bool,
                 desc: str):
    """The model's features of a file, streamed in blocks of ``block_frames`` frames (with a
    progress bar when asked: its length comes from the file's header where it can be read)."""
    import soundfile as sf
    from tqdm import tqdm

    from ..features.stream import stream_features

    features = tm.features
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


def classify_file(tm: TrainedModel, path: str | Path, speaker: str | None = None, *,
                  block_frames: int = 6000, batch: int = 64, progress: bool = False,
                  keep_attention: bool = False) -> dict:
    """Classify one audio file of any length in bounded memory: features are streamed in blocks
    of ``block_frames`` (a first streamed pass gathers the utterance statistics when the speaker
    was not seen in training), cut into segments as in training and scored ``batch`` at a time.

    Returns {"probabilities" (K,), "logp" (S, K) per segment, "lengths" (S,), and with
    keep_attention for SSA models "alpha_em" / "alpha_sp" (S, T)}; the same numbers as
    :func:`classify` on the whole file."""
    name = Path(path).name
    stats = tm.normaliser.stats_for(speaker)
    if stats is None:  # the utterance's own statistics: one streamed pass first
        acc = FrameStats()
        for f in _file_blocks(tm, path, block_frames, progress, f"{name}: statistics"):
            acc.add(f)
        stats = acc.stats(tm.normaliser.eps)
    parts: dict[str, list] = {}
    lengths: list[int] = []
    segments = _stream_segments(_file_blocks(tm, path, block_frames, progress, name),
                                tm.normaliser, stats, tm.segment_frames)
    while chunk := list(itertools.islice(segments, batch)):
        _score(tm, torch.stack([seg for seg, _ in chunk]), parts, keep_attention)
        lengths += [n for _, n in chunk]
    res = {k: torch.cat(v) for k, v in parts.items()}
    res["probabilities"] = utterance_probabilities(
        res["logp"], torch.zeros(len(lengths), dtype=torch.long), 1, tm.pooling)[0]
    res["lengths"] = torch.tensor(lengths)
    return res
