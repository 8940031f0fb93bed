"""Using a trained model: load a ``best.pt`` written by training, classify features of whole
utterances (normalised with the training statistics, cut into segments, pooled per utterance),
and score a labelled corpus with it: in the checkpoint's own fold layout and without the
utterances it was trained on (evaluation_subset).

Speaker normalisation uses the training statistics of a speaker seen in training and falls back to
the utterance's own statistics for an unseen one (design.md section 3).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.segments import MIN_TAIL, FrameStats, Normaliser, Segments, Stats, make_segments
from ..features.config import FeatureConfig
from ..models import model_from_config
from ..train.loop import load_checkpoint, score_batch, utterance_probabilities
from ..train.metrics import confusion_matrix, scores


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
    # what produced it (fingerprint.py): identity (corpus, fold layout, configs), fingerprint,
    # the listing keys of its training utterances and the keys ({kind: keys}) of every
    # utterance it used; None in checkpoints written before they were stored
    identity: dict | None = None
    train_utterances: list[str] | None = None
    used_utterances: dict | None = None

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
                        ckpt.get("identity"), ckpt.get("train_utterances"),
                        ckpt.get("used_utterances"))


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


def score(tm: TrainedModel, features: list[torch.Tensor], labels: list[str],
          speakers: list[str | None], batch: int = 128) -> dict:
    """Segment- and utterance-level UAR, WA, macro F1, per-class recall and confusion matrices
    of a labelled set of utterances.
    Labels are class names; a name the model does not know is an error."""
    unknown = sorted(set(labels) - set(tm.classes))
    if unknown:
        raise ValueError(f"labels {unknown} are not classes of the model ({tm.classes})")
    y = np.array([tm.classes.index(c) for c in labels])
    probs, segs, out = classify(tm, features, speakers, batch)
    K = len(tm.classes)
    seg_cm = confusion_matrix(y[segs.utterance.numpy()], out["logp"].argmax(1).numpy(), K)
    utt_cm = confusion_matrix(y, probs.argmax(1).numpy(), K)
    return {**scores(seg_cm, "segment"), **scores(utt_cm, "utterance"),
            "segment_cm": seg_cm.tolist(), "utterance_cm": utt_cm.tolist(),
            "n_utterances": len(labels), "n_segments": len(segs),
            "predictions": [tm.classes[int(i)] for i in probs.argmax(1)]}


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


def fold_layout_to_score(tm: TrainedModel, fold: int, protocol: str | None = None,
                         k: int | None = None, seed: int | None = None, warn=None) -> dict:
    """The checkpoint's fold layout with validation fold ``fold``; ``protocol``, ``k`` and
    ``seed`` (None: the checkpoint's) or ``fold`` other than the checkpoint's raise a UserError
    naming them (that fold's "validation" set would be made mostly of training utterances).
    Needs no data: the command line calls it before loading any audio."""
    from ..errors import UserError
    from ..train.fingerprint import describe_layout

    layout = tm.fold_layout
    if layout is None:
        if warn is not None:
            warn("the checkpoint does not record its fold layout (written by an older "
                 "version): cannot check that this fold's validation set was held out")
        return {"protocol": protocol, "k": k if k is not None else 10, "seed": seed or 0,
                "fold": fold, "selection": 0.0}
    asked = {"protocol": protocol, "k": k, "seed": seed, "fold": fold}
    option = {"protocol": "--protocol", "k": "--folds", "seed": "--seed", "fold": "--fold"}
    wrong = [f"{option[key]} {value}" for key, value in asked.items()
             if value is not None and value != layout[key]]
    if wrong:
        raise UserError(f"{' '.join(wrong)}: the checkpoint was trained on "
                        f"{describe_layout(layout)}; another fold layout would score its "
                        "training utterances (leave these options out to use the checkpoint's)")
    return layout


def evaluation_subset(tm: TrainedModel, corpus, *, fold: int | None = None,
                      protocol: str | None = None, k: int | None = None, seed: int | None = None,
                      include_training: bool = False, warn=None) -> tuple[list[int], str, dict]:
    """The utterances of ``corpus`` that ``evaluate`` scores: (indices, description, notes).

    With ``fold``, that fold's validation utterances (its test utterances if the checkpoint was
    trained with a selection split) under the checkpoint's own fold layout: ``protocol``, ``k``
    and ``seed`` default to the checkpoint's, and a value other than the checkpoint's (or
    another fold) is refused with a UserError, since that "validation" set would be made
    mostly of training utterances. Without ``fold``, every utterance.

    Either way, utterances the checkpoint used (trained on, or chose its epoch on) are
    excluded, with a warning saying how many, unless ``include_training``, which scores them
    and warns. They are recognised whatever the listing (fingerprint.used_positions: the same
    file or the same audio through another manifest); checkpoints of older versions by their
    training utterances' path relative to the corpus root, size, speaker and label.
    ``warn(text)`` receives the warnings. Checkpoints written before the layout and training
    utterances were stored cannot be checked: that is a warning too."""
    from ..errors import UserError
    from ..train.cv import split_fold
    from ..train.fingerprint import corpus_identity, describe_layout, used_positions

    warn = warn or (lambda text: None)
    notes: dict = {"fold_layout": tm.fold_layout}
    idx, where = list(range(len(corpus))), "all utterances"
    if fold is not None:
        layout = fold_layout_to_score(tm, fold, protocol, k, seed, warn)
        if tm.identity and tm.identity["corpus"]["hash"] != corpus_identity(corpus)["hash"]:
            warn(f"the corpus differs from the one the checkpoint was trained on "
                 f"({tm.identity['corpus']['utterances']} utterances then, {len(corpus)} now, "
                 "or changed files): its folds are rebuilt on this corpus")
        _, va, te = split_fold(corpus, layout["protocol"], layout["k"], fold, layout["seed"],
                               layout.get("selection") or 0.0)
        idx = [int(i) for i in (va if te is None else te)]
        where = (f"{'test' if te is not None else 'validation'} set of fold {fold} "
                 f"({describe_layout(layout)})")
    if tm.train_utterances is None:
        warn("the checkpoint does not record its training utterances (written by an older "
             "version): cannot check whether any scored utterance was used in training")
        notes["training_utterances"] = None
        return idx, where, notes
    used = tm.used_utterances or {"listing": tm.train_utterances}
    seen = used_positions(corpus, idx, used)
    notes["training_utterances"] = len(seen)
    if seen and include_training:
        warn(f"{len(seen)} of the {len(idx)} utterances scored were in the checkpoint's "
             "training set (--include-training): these scores are not a held-out measurement")
    elif seen:
        drop = set(seen)
        if len(drop) == len(idx):
            raise UserError(f"all {len(idx)} utterances of the {where} were used to train the "
                            "checkpoint: nothing held out to score")
        chose = " or chose its epoch on them" if (tm.fold_layout or {}).get("selection") else ""
        warn(f"excluded {len(seen)} of the {len(idx)} utterances: the checkpoint was trained "
             f"on them{chose} (--include-training scores them too)")
        idx = [i for j, i in enumerate(idx) if j not in drop]
        where += ", without the training utterances"
    notes["excluded_training"] = 0 if include_training else len(seen)
    return idx, where, notes
