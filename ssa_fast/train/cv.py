"""K-fold cross-validation of several models on one corpus: the paper's Table 1 protocol.

Per fold: fit the normaliser on the fold's training utterances, cut segments, train every model,
keep its validation metrics. The table gives UAR mean +- 95% CI over folds, segment- and
utterance-level; per-fold results and figures go to the output folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from ..data.corpus import Corpus
from ..data.segments import MIN_TAIL, Normaliser, make_segments
from ..data.splits import leave_one_speaker_out, linguistic_folds, random_folds
from ..reports.experiment import DISPLAY_NAMES
from .loop import TrainConfig, train
from .metrics import mean_ci95

PROTOCOLS = ("random", "linguistic", "loso")
MODEL_NAMES = DISPLAY_NAMES


def make_folds(corpus: Corpus, protocol: str, k: int, seed: int = 0):
    """(train, validation) index arrays of the k folds of a protocol.

    random: a random 80/20 split per fold (IEMOCAP). linguistic: with k = 10 the paper's
    Att-HACK split (10 phrase groups, 2 validate per fold); with another k, the phrases form k
    groups and each group validates once (plain K-fold over phrases), so that the validation
    sets of a short run do not overlap. loso: the first k speakers, one per fold."""
    if protocol == "random":
        return random_folds(len(corpus), k, 0.2, seed)
    if protocol == "linguistic":
        groups, val_groups = (10, 2) if k == 10 else (k, 1)
        return linguistic_folds([r.phrase for r in corpus], k, groups, val_groups, seed=seed)
    if protocol == "loso":
        return leave_one_speaker_out([r.speaker for r in corpus])[:k]
    raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")


def prepare_fold(corpus: Corpus, feats: list[torch.Tensor], train_idx, val_idx, *,
                 normalisation: str = "speaker", segment_frames: int = 300,
                 train_hop: int | None = None, min_tail: int = MIN_TAIL):
    speakers = [r.speaker for r in corpus]
    labels = corpus.labels
    speaker_index = {s: i for i, s in enumerate(corpus.speakers)}
    norm = Normaliser(normalisation).fit([feats[i] for i in train_idx],
                                         [speakers[i] for i in train_idx])

    def segs(idx, hop):
        return make_segments([feats[i] for i in idx], labels[idx], [speakers[i] for i in idx],
                             norm, speaker_index, segment_frames=segment_frames, hop=hop,
                             min_tail=min_tail)

    return segs(np.asarray(train_idx), train_hop), segs(np.asarray(val_idx), None), norm


def fold_bundle(corpus: Corpus, norm: Normaliser, segment_frames: int,
                feature_params: dict | None = None) -> dict:
    """What a trained model needs for prediction, stored in its best.pt (see inference)."""
    return {"classes": corpus.classes, "speakers": corpus.speakers,
            "normaliser": norm.state_dict(), "segment_frames": segment_frames,
            "feature_params": feature_params or {}}


def run_summary(res: dict) -> dict:
    """A training result without the model and the per-segment outputs (JSON-ready)."""
    return {k: v for k, v in res.items() if k not in ("model", "alpha_em", "alpha_sp", "z")}


def cross_validate(corpus: Corpus, feats: list[torch.Tensor], models: list[str], cfg: TrainConfig,
                   out_dir: str | Path, *, protocol: str = "random", k: int = 10,
                   normalisation: str = "speaker", segment_frames: int = 300,
                   train_hop: int | None = None, resume: bool = True, progress: bool = True,
                   feature_params: dict | None = None) -> dict:
    """Run every model on every fold; returns (and writes to out_dir/results.json) the per-fold
    metrics and the summary. Folds already finished (their result.json exists) are reused."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    folds = make_folds(corpus, protocol, k, cfg.seed)
    results: dict[str, list[dict]] = {m: [] for m in models}
    figures_data: dict[str, dict] = {}
    bar = tqdm(total=len(folds) * len(models), desc="cross-validation", unit="run",
               disable=not progress)
    for f, (tr, va) in enumerate(folds):
        train_segs, val_segs, norm = prepare_fold(corpus, feats, tr, va,
                                                  normalisation=normalisation,
                                                  segment_frames=segment_frames,
                                                  train_hop=train_hop)
        for m in models:
            run_dir = out_dir / m / f"fold{f:02d}"
            done = run_dir / "result.json"
            if resume and done.is_file():
                results[m].append(json.loads(done.read_text()))
                bar.update()
                continue
            bundle = fold_bundle(corpus, norm, segment_frames, feature_params)
            res = train(replace(cfg, model=m), train_segs, val_segs,
                        n_classes=len(corpus.classes), n_speakers=len(corpus.speakers),
                        out_dir=run_dir, resume=resume, progress=progress, bundle=bundle)
            summary = run_summary(res)
            summary.update(fold=f, n_train=len(tr), n_val=len(va))
            done.write_text(json.dumps(summary))
            results[m].append(summary)
            if f == 0:  # figures use the first fold's validation outputs
                figures_data[m] = {"alpha_em": res["alpha_em"], "alpha_sp": res["alpha_sp"],
                                   "z": res["z"], "labels": val_segs.label,
                                   "lengths": val_segs.lengths}
            bar.update()
    bar.close()
    summary = {}
    for m in models:
        seg = [r["segment_uar"] for r in results[m]]
        utt = [r["utterance_uar"] for r in results[m]]
        summary[m] = {"name": MODEL_NAMES.get(m, m), "segment_uar": mean_ci95(seg),
                      "utterance_uar": mean_ci95(utt), "folds": len(seg),
                      "segment_cm": np.sum([r["segment_cm"] for r in results[m]], 0).tolist(),
                      "utterance_cm": np.sum([r["utterance_cm"] for r in results[m]], 0).tolist()}
    out = {"corpus": corpus.name, "protocol": protocol, "k": len(folds),
           "classes": corpus.classes, "config": asdict(cfg), "summary": summary,
           "folds": results}
    (out_dir / "results.json").write_text(json.dumps(out, indent=1))
    out["figures_data"] = figures_data
    return out
