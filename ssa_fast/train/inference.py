"""Using a trained model: load a ``best.pt`` written by training, classify features of whole
utterances (normalised with the training statistics, cut into segments, pooled per utterance),
and score a labelled corpus with it.

Speaker normalisation uses the training statistics of a speaker seen in training and falls back to
the utterance's own statistics for an unseen one (SPEC.md section 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.segments import MIN_TAIL, Normaliser, Segments, make_segments
from ..models import SSACRNN, model_from_config
from .loop import load_checkpoint, utterance_probabilities
from .metrics import confusion_matrix, uar


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

    @property
    def is_ssa(self) -> bool:
        return isinstance(self.model, SSACRNN)


def load_trained(path: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    """A model checkpoint written by training (``best.pt``), ready for inference."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = load_checkpoint(path)
    except Exception as exc:  # pickle / zip errors of a file that is not a checkpoint
        raise ValueError(f"{path}: not a checkpoint that loads with weights_only=True "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from exc
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
                        int(bundle["segment_frames"]), dict(bundle.get("feature_params", {})),
                        ckpt["config"].get("pooling", "mean"), ckpt["config"])


@torch.no_grad()
def _score_batch(tm: TrainedModel, x: torch.Tensor, parts: dict, attention: bool) -> None:
    """Run one batch of segments; append its log-probabilities (and attention) to ``parts``."""
    out = tm.model(x.to(next(tm.model.parameters()).device))
    logits = out.emotion_logits if tm.is_ssa else out
    parts.setdefault("logp", []).append(F.log_softmax(logits.float(), dim=-1).cpu())
    if attention and tm.is_ssa:
        parts.setdefault("alpha_em", []).append(out.alpha_em.float().cpu())
        parts.setdefault("alpha_sp", []).append(out.alpha_sp.float().cpu())


def segment_outputs(tm: TrainedModel, segs: Segments, batch: int = 128) -> dict:
    """Per-segment log-probabilities (S, K), and for SSA models the attention weights."""
    parts: dict[str, list] = {}
    for i in range(0, len(segs), batch):
        _score_batch(tm, segs.x[i:i + batch], parts, attention=True)
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
    """Segment- and utterance-level UAR and confusion matrices of a labelled set of utterances.
    Labels are class names; a name the model does not know is an error."""
    unknown = sorted(set(labels) - set(tm.classes))
    if unknown:
        raise ValueError(f"labels {unknown} are not classes of the model ({tm.classes})")
    y = np.array([tm.classes.index(c) for c in labels])
    probs, segs, out = classify(tm, features, speakers, batch)
    K = len(tm.classes)
    seg_cm = confusion_matrix(y[segs.utterance.numpy()], out["logp"].argmax(1).numpy(), K)
    utt_cm = confusion_matrix(y, probs.argmax(1).numpy(), K)
    return {"segment_uar": uar(seg_cm), "utterance_uar": uar(utt_cm),
            "segment_cm": seg_cm.tolist(), "utterance_cm": utt_cm.tolist(),
            "n_utterances": len(labels), "n_segments": len(segs),
            "predictions": [tm.classes[int(i)] for i in probs.argmax(1)]}


def _stream_stats(blocks, eps: float):
    """Mean and (unbiased) std over all frames of streamed (3, F, M) blocks, as Normaliser."""
    from ..data.segments import Stats

    total = sq = None
    n = 0
    for f in blocks:
        f = f.double()
        s, q = f.sum(dim=1, keepdim=True), (f * f).sum(dim=1, keepdim=True)
        total, sq = (s, q) if total is None else (total + s, sq + q)
        n += f.shape[1]
    mean = total / n
    var = (sq - n * mean * mean) / max(n - 1, 1)
    return Stats(mean, var.clamp_min(0).sqrt().clamp_min(eps))


def classify_file(tm: TrainedModel, path: str | Path, speaker: str | None = None, *,
                  block_frames: int = 6000, batch: int = 64, progress: bool = False,
                  keep_attention: bool = False) -> dict:
    """Classify one audio file of any length in bounded memory: features are streamed in blocks
    of ``block_frames`` (a first streamed pass gathers the utterance statistics when the speaker
    was not seen in training), cut into segments as in training and scored ``batch`` at a time.

    Returns {"probabilities" (K,), "logp" (S, K) per segment, "lengths" (S,), and with
    keep_attention for SSA models "alpha_em" / "alpha_sp" (S, T)}; the same numbers as
    :func:`classify` on the whole file."""
    import soundfile as sf
    from tqdm import tqdm

    from ..features.stream import stream_features

    params = dict(tm.feature_params)
    sr = params.pop("sample_rate", 16000)
    hop = params.get("hop_length", 160)

    def blocks(desc):
        try:
            seconds = sf.info(str(path)).duration
        except Exception:  # stream_features reports unreadable files with a clear error
            seconds = None
        total = None if seconds is None else int(seconds * sr / hop) // block_frames + 1
        return tqdm(stream_features(path, block_frames=block_frames, sample_rate=sr, **params),
                    total=total, desc=desc, unit="block", leave=False, disable=not progress)

    norm = tm.normaliser
    stats = norm.stats_for(speaker)
    if stats is None:
        stats = _stream_stats(blocks(f"{Path(path).name}: statistics"), norm.eps)

    L = tm.segment_frames
    parts: dict[str, list] = {}
    lengths, pending = [], []

    def run(segments):
        _score_batch(tm, torch.stack(segments), parts, keep_attention)

    def emit(frames, length):
        seg = torch.zeros(3, L, frames.shape[2], dtype=frames.dtype)
        seg[:, :length] = frames[:, :length]  # zero padding after normalisation
        pending.append(seg)
        lengths.append(length)
        if len(pending) == batch:
            run(pending)
            pending.clear()

    carry = None
    for f in blocks(Path(path).name):
        z = norm.apply(f, stats)
        carry = z if carry is None else torch.cat([carry, z], dim=1)
        while carry.shape[1] >= L:
            emit(carry[:, :L], L)
            carry = carry[:, L:]
    # the tail segment follows segment_bounds: kept when long enough or the only segment
    if carry is not None and carry.shape[1] > 0 and (not lengths or carry.shape[1] >= MIN_TAIL):
        emit(carry, carry.shape[1])
    if pending:
        run(pending)
    res = {k: torch.cat(v) for k, v in parts.items()}
    logp = res["logp"]
    res["probabilities"] = utterance_probabilities(
        logp, torch.zeros(len(logp), dtype=torch.long), 1, tm.pooling)[0]
    res["lengths"] = torch.tensor(lengths)
    return res
