"""Scoring segments with a trained model and pooling them into utterances: the one scorer of
validation, evaluation and prediction (train/ and predict/ both use it)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .constants import POOLINGS  # noqa: F401 (also this module's)


def scoring_batch(device: torch.device | str, batch: int | None = None) -> int:
    """Segments per forward pass when scoring on ``device``: ``batch``, or by default 32 on the
    CPU and 128 elsewhere. On the CPU larger batches are slower (their activations exceed what
    the allocator keeps: 168 segments of the small preset took 714 ms in batches of 128 and
    459 ms in batches of 32, benchmarks/RESULTS.md); the scores do not change."""
    if batch is not None:
        if not batch >= 1:
            raise ValueError(f"batch size must be >= 1, got {batch}")
        return int(batch)
    return 32 if torch.device(device).type == "cpu" else 128


def utterance_probabilities(logp: torch.Tensor, utterance: torch.Tensor, n_utterances: int,
                            pooling: str = "mean") -> torch.Tensor:
    """Class probabilities (U, K) of each utterance from its segments' log-probabilities (S, K);
    ``utterance`` (S,) holds each segment's utterance in [0, U).

    "mean" [choice]: softmax of the mean segment log-probability; "max" (Chen et al.'s code):
    the largest segment posterior per class, renormalised.
    """
    U, K = n_utterances, logp.shape[1]
    if pooling == "mean":
        total = torch.zeros(U, K, dtype=logp.dtype).index_add_(0, utterance, logp)
        count = torch.zeros(U, dtype=logp.dtype).index_add_(0, utterance, torch.ones_like(
            utterance, dtype=logp.dtype))
        return torch.softmax(total / count[:, None], dim=-1)
    best = torch.zeros(U, K, dtype=logp.dtype).scatter_reduce(
        0, utterance[:, None].expand_as(logp), logp.exp(), "amax")
    return best / best.sum(dim=1, keepdim=True)


@torch.no_grad()
def score_batch(model, x: torch.Tensor, parts: dict, *, keep_outputs: bool = False,
                bf16: bool = False) -> None:
    """Score one batch of segments ``x`` (B, 3, T, M) with ``model`` (in eval mode, on any
    device) and append to ``parts`` (lists, on the CPU): "logp" (B, K) log-probabilities,
    "speaker" (B,) predicted speakers of an SSA-CRNN, and with ``keep_outputs`` "alpha_em",
    "alpha_sp" (SSA-CRNN) (B, T) attention weights and "z" (B, embedding) emotion embeddings.
    The one scorer of validation, evaluation and prediction."""
    x = x.to(next(model.parameters()).device)
    with torch.autocast(x.device.type, torch.bfloat16, enabled=bf16):
        out = model(x)
    parts.setdefault("logp", []).append(F.log_softmax(out.emotion_logits.float(), dim=-1).cpu())
    if out.speaker_logits is not None:
        parts.setdefault("speaker", []).append(out.speaker_logits.argmax(dim=1).cpu())
    if keep_outputs:
        parts.setdefault("alpha_em", []).append(out.alpha_em.float().cpu())
        if out.alpha_sp is not None:
            parts.setdefault("alpha_sp", []).append(out.alpha_sp.float().cpu())
        parts.setdefault("z", []).append(out.z_em.float().cpu())
