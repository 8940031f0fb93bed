"""K-fold cross-validation of several models on one corpus: the paper's Table 1 protocol.

Per fold: fit the normaliser on the fold's training utterances, cut segments, train every model,
keep its validation metrics. The table gives UAR mean +- 95% CI over folds, segment- and
utterance-level, with the mean of the last k epochs, WA, macro F1 and per-class recall;
per-fold results and figures go to the output folder. Every fold result carries the identity
and fingerprint of the run that produced it (fingerprint.py), and only a result with this run's
fingerprint is reused. With a selection split, the epoch is chosen on part of the training
utterances and the fold's held-out utterances are a test set reported in the table.
Every (model, fold) run is trained or read under the lock of its folder, so that processes can
share the work (parallel.py: ``cv --jobs``, ``--shard``) without ever training a run twice.
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .. import distributed as dist
from .._atomic import sweep_stale, write_json
from .._lock import folder_lock, holder
from .._warn import warn as warn_user
from ..data.corpus import Corpus, check_speakers
from ..data.segments import MIN_TAIL, SEGMENT_FRAMES, Normaliser, make_segments
from ..data.splits import (
    PROTOCOLS,
    check_folds,
    iemocap_session,
    leave_one_session_out,
    leave_one_speaker_out,
    linguistic_folds,
    random_folds,
)
from ..errors import UserError
from ..metrics import last_k_mean, last_k_values, mean_ci95
from ..models import checkpoint, display_name
from .fingerprint import (
    corpus_identity,
    differences,
    environment,
    environment_differences,
    environments,
    fingerprint,
    fold_layout,
    run_identity,
    split_digest,
    used_keys,
    utterance_keys,
)
from .loop import PER_SEGMENT, TrainConfig, build_model, evaluate, train
from .timing import Breakdown


def make_folds(corpus: Corpus, protocol: str, k: int, seed: int = 0, *, check: bool = True):
    """(train, validation) index arrays of the k folds of a protocol.

    random: a random 80/20 split per fold (IEMOCAP). linguistic: with k = 10 the paper's
    Att-HACK split (10 phrase groups, 2 validate per fold); with another k, the phrases form k
    groups and each group validates once (plain K-fold over phrases), so that the validation
    sets of a short run do not overlap. loso: the first k speakers, one per fold. The random
    split is stratified by class; every layout is checked (check_folds) so that a class missing
    from some fold's training or validation part stops the run before any training (``check``
    False: not checked, for scoring a trained model, which trains nothing)."""
    if protocol == "random":
        folds = random_folds(len(corpus), k, 0.2, seed, labels=corpus.labels)
    elif protocol == "linguistic":
        groups, val_groups = (10, 2) if k == 10 else (k, 1)
        folds = linguistic_folds([r.phrase for r in corpus], k, groups, val_groups, seed=seed)
    elif protocol == "loso":
        folds = leave_one_speaker_out([r.speaker for r in corpus])[:k]
    elif protocol == "loso-session":  # IEMOCAP: the first k sessions, one per fold
        folds = leave_one_session_out([r.speaker for r in corpus])[:k]
    else:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if not check:
        return folds
    return check_folds(folds, corpus.labels, corpus.classes, f"{protocol}, {len(folds)} folds")


def check_fold(fold: int, k: int, protocol: str | None = None) -> None:
    """Refuse a fold index outside the ``k`` folds of a layout (the message names ``--fold``)."""
    if not 0 <= fold < k:
        layout = f"{k} folds" + (f" ({protocol})" if protocol else "")
        raise UserError(f"--fold must be in [0, {k}) for {layout}, got {fold}")


def split_fold(corpus: Corpus, protocol: str, k: int, fold: int, seed: int = 0,
               selection: float = 0.0, *, folds=None, check: bool = True) -> tuple:
    """(training, validation, test or None) utterance indices of one fold (``folds``: the
    layout of make_folds, when already made; ``check``: make_folds').

    With ``selection`` the validation part chooses the epoch and is carved out of the fold's
    training utterances, so that the fold's own held-out utterances can be a test set that
    plays no part in any choice. linguistic: a random ``selection`` fraction of the training
    phrases (no phrase in both); otherwise a random fraction of every class's training
    utterances (stratified). At least one phrase / utterance per class is selected and at
    least one stays in training."""
    folds = make_folds(corpus, protocol, k, seed, check=check) if folds is None else folds
    check_fold(fold, len(folds))
    train_idx, val_idx = folds[fold]
    if not selection:
        return train_idx, val_idx, None
    if not 0 < selection < 1:
        raise UserError(f"the selection fraction must be in (0, 1), got {selection}")
    train_idx = np.asarray(train_idx)
    rng = np.random.default_rng([seed, fold, 7])
    if protocol == "linguistic":
        phrases = np.array([corpus[int(i)].phrase for i in train_idx])
        unique = np.array(sorted(set(phrases.tolist())))
        n = max(1, int(round(selection * len(unique))))
        if n >= len(unique):
            raise UserError(f"--selection-split {selection:g}: the {len(unique)} training "
                            f"phrases of fold {fold} cannot be split so")
        chosen = np.isin(phrases, rng.choice(unique, n, replace=False))
    else:
        labels = corpus.labels[train_idx]
        chosen = np.zeros(len(train_idx), dtype=bool)
        for c in np.unique(labels):
            pool = np.flatnonzero(labels == c)
            n = min(max(1, int(round(selection * len(pool)))), len(pool) - 1)
            chosen[rng.choice(pool, n, replace=False)] = True
    split = [(train_idx[~chosen], train_idx[chosen])]
    try:
        check_folds(split, corpus.labels, corpus.classes, f"the selection split of fold {fold}")
    except ValueError as exc:
        raise UserError(f"--selection-split {selection:g}: {exc}") from None
    return (*split[0], val_idx)


def check_plan(corpus: Corpus, models: list[str], *, protocol: str, k: int, seed: int,
               normalisation: str | None, fold: int | None = None,
               selection: float = 0.0) -> list:
    """Refuse, before any feature or training work, what these models cannot do on this
    corpus: a speaker missing where one is needed (check_speakers), a class missing from some
    fold's training or validation part (make_folds), a fold index outside the layout, a
    selection split that some fold to run cannot make. Returns the folds of make_folds."""
    check_speakers(corpus, models, normalisation, protocol)
    folds = make_folds(corpus, protocol, k, seed)
    if protocol in ("loso", "loso-session"):
        _say_who_is_left_out(corpus, protocol, folds)
    if fold is not None:
        check_fold(fold, len(folds), protocol)
    if selection:  # every fold it will run can be split so
        for f in range(len(folds)) if fold is None else [fold]:
            split_fold(corpus, protocol, k, f, seed, selection, folds=folds)
    return folds


def _say_who_is_left_out(corpus: Corpus, protocol: str, folds: list) -> None:
    """Warn when a leave-one-group-out layout holds out fewer groups (the first --folds) than
    the corpus has: the others are never validated, which the table does not show."""
    unit = "speaker" if protocol == "loso" else "session"
    group = (lambda s: s) if protocol == "loso" else iemocap_session
    every = sorted({group(r.speaker) for r in corpus})
    held = {group(corpus[int(i)].speaker) for _, va in folds for i in va}
    left = [g for g in every if g not in held]
    if left:
        shown = ", ".join(left[:8]) + (", ..." if len(left) > 8 else "")
        _warn(f"--protocol {protocol} with {len(folds)} folds holds out {len(held)} of the "
              f"{len(every)} {unit}s: {shown} {'is' if len(left) == 1 else 'are'} never held out "
              f"(--folds {len(every)} holds out every {unit})")


def run_provenance(corpus: Corpus, corpus_id: dict, layout: dict, cfg: TrainConfig, data: dict,
                   split: tuple, keys: list[str] | None = None) -> dict:
    """What a run on ``split`` (:func:`split_fold`'s) stores about its origin (see
    fingerprint.py): its identity, the listing keys of the utterances it trains on (what older
    versions read), the keys of every utterance it used, those that chose its epoch with a
    selection split included (``evaluate`` leaves them out whatever the listing), and the keys
    of its held-out utterances that chose its epoch without one (its validation set, which
    ``evaluate`` counts and says of, whatever the listing). ``keys``: the corpus'
    ``utterance_keys``, when already made."""
    train_idx, val_idx, test_idx = split
    selection_idx, held_out = (None, val_idx) if test_idx is None else (val_idx, test_idx)
    keys = utterance_keys(corpus) if keys is None else keys
    used = np.concatenate([np.asarray(train_idx, dtype=np.int64),
                           np.asarray([] if selection_idx is None else selection_idx,
                                      dtype=np.int64)])
    digest = split_digest(keys, train_idx, selection_idx, held_out)
    return {"identity": run_identity(corpus_id, layout, asdict(cfg.as_used()), data, digest),
            "train_utterances": [keys[int(i)] for i in train_idx],
            "used_utterances": used_keys(corpus, used),
            "epoch_utterances": used_keys(corpus, val_idx if selection_idx is None else [])}


def _warn(message: str) -> None:
    if dist.is_main():  # (the CLI prints warnings as one line: "ssa-fast cv: warning: ...")
        warn_user(message)


def _note(message: str) -> None:
    if dist.is_main():
        print(message, file=sys.stderr, flush=True)


RUN_FILES = ("result.json", "best.pt", "last.pt", "metrics.csv", "training_curves.png")


def _finished(run_dir: Path, identity: dict, fingerprint: str, resume: bool,
              what: str, on_replace=None) -> dict | None:
    """The stored result of a run when it finished with ``fingerprint`` (and ``resume``);
    otherwise None, after removing what another run left in ``run_dir`` (a ``last.pt`` of this
    run is kept: training resumes from it). Under torchrun rank 0, which holds the run's lock,
    reads the folder and decides; the other ranks follow its decision (read by each rank, the
    folder could differ between them while another process finished the run, and the ranks
    went separate ways: one reused it, the other waited to train it, for ever). ``on_replace()``
    is called once the files are gone (see cross_validate)."""
    result, stale = _decide(run_dir, identity, fingerprint, resume, what) if dist.is_main() \
        else (None, None)
    result, stale = dist.broadcast((result, stale))
    if result is not None:
        return result
    if stale and dist.is_main():
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
        if on_replace is not None:  # (after the files: see replaced_since)
            on_replace()
    dist.barrier()  # nothing of another run is left when any rank starts this one
    return None


def _decide(run_dir: Path, identity: dict, fingerprint: str, resume: bool,
            what: str) -> tuple[dict | None, str | None]:
    """(the stored result to reuse or None, why the folder's files must go or None)."""
    done, last = run_dir / "result.json", run_dir / "last.pt"
    result = stale = None
    if done.exists():
        try:
            result = json.loads(done.read_text())
            if not isinstance(result, dict) or "utterance_uar" not in result:
                raise ValueError("not a fold result")
        except (OSError, ValueError) as exc:  # (JSONDecodeError is a ValueError)
            size = done.stat().st_size if done.is_file() else 0
            _warn(f"{what}: {done} is unreadable or partial ({size} bytes; "
                  f"{(str(exc).splitlines() or [type(exc).__name__])[0][:120]}); "
                  "recomputing")
            result, stale = None, "unreadable"
    if result is not None:
        if result.get("fingerprint") != fingerprint:
            changed = differences(result.get("identity"), identity)
            _warn(f"{what} in {run_dir} was computed with other settings "
                  f"({'; '.join(changed[:6])}{' ...' if len(changed) > 6 else ''}); "
                  "recomputing")
            stale = "other settings"
        elif not (run_dir / "best.pt").is_file():
            _warn(f"{what}: {run_dir / 'best.pt'} is missing; recomputing")
            stale = "incomplete"
        elif not resume:
            stale = "restart"
        else:
            return result, None
    elif last.is_file():
        try:
            last_fp = checkpoint.fingerprint_of(last)
        except Exception:  # noqa: BLE001 - any unreadable file: start this run afresh
            last_fp = None
        if last_fp != fingerprint or not resume:
            if resume:
                _warn(f"{what}: {last} belongs to another run; starting afresh")
            stale = "other run"
    return None, stale


def _outputs_of(path: Path, cfg: TrainConfig, corpus: Corpus, segs) -> dict:
    """The figures' per-segment outputs of a finished run's best.pt (reused folds)."""
    weights = checkpoint.weights(path)
    model = build_model(cfg, len(corpus.classes), len(corpus.speakers), segs.x.shape[2],
                        segs.x.shape[3])
    model.load_state_dict(weights)
    model.to(cfg.device)
    return evaluate(model, segs, cfg, len(corpus.classes), keep_outputs=True)


def summarise(rows: list[dict], test: bool, last_k: int, name: str = "") -> dict:
    """Mean ± 95% CI over folds of the reported metrics of one model: the selected epoch's
    (best validation utterance UAR) on the fold's validation set, or with a selection split on
    its test set; and the mean of the last ``last_k`` epochs on the same set, with the number
    of epochs it is over in each fold (``last_k_epochs``: fewer where a fold ran fewer)."""
    part = (lambda r: r["test"]) if test else (lambda r: r)
    hist = "test_" if test else ""
    out = {}
    for key in ("segment_uar", "utterance_uar", "utterance_wa", "utterance_macro_f1"):
        out[key] = mean_ci95([part(r)[key] for r in rows])
    for key in ("segment_uar", "utterance_uar"):
        out[f"last_k_{key}"] = mean_ci95([last_k_mean(r["history"], hist + key, last_k)
                                          for r in rows])
    # per fold, the epochs that mean is over: fewer than last_k where a fold ran fewer
    out["last_k_epochs"] = [len(last_k_values(r["history"], hist + "utterance_uar", last_k))
                            for r in rows]
    recalls = np.array([[np.nan if v is None else v for v in part(r)["utterance_recall"]]
                        for r in rows], dtype=float)
    out["utterance_recall"] = [None if np.isnan(c).all() else float(np.nanmean(c))
                               for c in recalls.T]
    for key in ("segment_cm", "utterance_cm"):
        out[key] = np.sum([part(r)[key] for r in rows], 0).tolist()
    return {"name": name, "folds": len(rows), **out}


def prepare_fold(corpus: Corpus, feats: list[torch.Tensor], train_idx, val_idx, *,
                 normalisation: str = "speaker", segment_frames: int = SEGMENT_FRAMES,
                 train_hop: int | None = None, min_tail: int = MIN_TAIL, test_idx=None):
    """(training segments, validation segments, normaliser) of one fold: the normaliser is fitted
    on the training utterances; with ``test_idx`` a fourth item, the test segments (cut with the
    same normaliser)."""
    speakers = [r.speaker for r in corpus]
    labels = corpus.labels
    speaker_index = {s: i for i, s in enumerate(corpus.speakers)}
    norm = Normaliser(normalisation).fit([feats[i] for i in train_idx],
                                         [speakers[i] for i in train_idx],
                                         segment_frames=segment_frames, hop=train_hop,
                                         min_tail=min_tail)

    def segs(idx, hop):
        return make_segments([feats[i] for i in idx], labels[idx], [speakers[i] for i in idx],
                             norm, speaker_index, segment_frames=segment_frames, hop=hop,
                             min_tail=min_tail)

    out = (segs(np.asarray(train_idx), train_hop), segs(np.asarray(val_idx), None), norm)
    return out if test_idx is None else (*out, segs(np.asarray(test_idx), None))


def features_of(feats: list[torch.Tensor], feature_params: dict | None) -> dict | None:
    """The feature parameters a run records: ``feature_params`` as given (its mel bands must be
    the features'), or, when a Python caller gives none, the mel bands of ``feats`` (the other
    parameters then read as the defaults: pass ``FeatureConfig(...).to_dict()`` for others).
    Recording the defaults' 40 bands for 64-band features made a checkpoint that its own
    prediction refused."""
    if not feats:
        return feature_params
    bands = int(feats[0].shape[-1])
    if feature_params is None:
        return {"n_mels": bands}
    given = feature_params.get("n_mels")
    if given is not None and int(given) != bands:
        raise ValueError(f"feature_params says n_mels={given}, but the features have {bands} "
                         "mel bands")
    return feature_params


def _data_settings(normalisation: str, segment_frames: int, train_hop: int | None,
                   feature_params: dict | None) -> dict:
    """The data part of a run's identity (fingerprint.py)."""
    return {"normalisation": normalisation, "segment_frames": segment_frames,
            "train_hop": train_hop, "features": feature_params or {}}


def _canonical(keys: list[str], idx):
    """The utterances ``idx`` in the order of their listing keys (``keys``: utterance_keys)."""
    return None if idx is None else sorted((int(i) for i in idx), key=lambda i: (keys[i], i))


def _fold_segments(corpus, feats, train_idx, val_idx, test_idx, data: dict):
    """(training, validation, test or None, normaliser) segments of one fold, each part's
    utterances in the order of their listing keys: the listing's order, which the identity does
    not hold (the split digest is of each part's keys sorted), decides neither the batches nor
    the normaliser's sums (before, the same files listed in another order reused a fold whose
    retraining gave other numbers)."""
    keys = utterance_keys(corpus)
    train_idx, val_idx, test_idx = (_canonical(keys, i) for i in (train_idx, val_idx, test_idx))
    out = prepare_fold(corpus, feats, train_idx, val_idx, normalisation=data["normalisation"],
                       segment_frames=data["segment_frames"], train_hop=data["train_hop"],
                       test_idx=test_idx)
    train_segs, val_segs, norm, *test = out
    return train_segs, val_segs, (test[0] if test else None), norm


def fold_bundle(corpus: Corpus, norm: Normaliser, segment_frames: int,
                feature_params: dict | None = None) -> dict:
    """What a trained model needs for prediction, stored in its best.pt (models/checkpoint.py)."""
    return checkpoint.make_bundle(corpus.classes, corpus.speakers, norm.state_dict(),
                                  segment_frames, feature_params)


def run_summary(res: dict) -> dict:
    """A training result without the model and the per-segment outputs (JSON-ready)."""
    per_segment = ("model", *PER_SEGMENT)
    return {k: v for k, v in res.items() if k not in per_segment}


def _train_run(cfg: TrainConfig, corpus: Corpus, fold_segs, split, fold: int,
               provenance: dict, data: dict, run_dir: Path, *, resume: bool, progress: bool,
               on_epoch_end=None, on_start=None) -> tuple[dict, dict]:
    """Train one model on one fold (its segments and (train, validation, test) indices) and
    write its result.json: (the training result, its JSON-ready summary). Shared by ``cv`` and
    ``train``, so both leave the same files."""
    train_segs, val_segs, test_segs, norm = fold_segs
    res = train(cfg, train_segs, val_segs, n_classes=len(corpus.classes),
                n_speakers=len(corpus.speakers), out_dir=run_dir, resume=resume,
                progress=progress, on_epoch_end=on_epoch_end,
                bundle=fold_bundle(corpus, norm, data["segment_frames"], data["features"]),
                provenance=provenance, test_segs=test_segs, on_start=on_start)
    train_idx, val_idx, test_idx = split
    summary = run_summary(res)
    summary.update(fold=fold, identity=provenance["identity"], n_train=len(train_idx),
                   n_val=len(val_idx), n_test=None if test_idx is None else len(test_idx),
                   n_train_segments=len(train_segs), environment=environment(cfg.device))
    if dist.is_main():
        write_json(Path(run_dir) / "result.json", summary, indent=1)
    return res, summary


class Run(NamedTuple):
    """One (model, fold) run of a cross-validation: where it goes and what identifies it."""
    fold: int
    model: str
    run_dir: Path
    split: tuple  # (training, validation, test or None) utterance indices
    provenance: dict
    fingerprint: str

    @property
    def name(self) -> str:
        return f"{self.model} fold {self.fold}"


def run_folder(out_dir: str | Path, model: str, fold: int) -> Path:
    """Where a run of a cross-validation goes: OUT/<model>/foldNN."""
    return Path(out_dir) / model / f"fold{fold:02d}"


def plan_runs(corpus: Corpus, models: list[str], cfg: TrainConfig, out_dir: str | Path, *,
              protocol: str = "random", k: int = 10, normalisation: str = "speaker",
              segment_frames: int = SEGMENT_FRAMES, train_hop: int | None = None,
              feature_params: dict | None = None, selection: float = 0.0) -> list[Run]:
    """Every run of a cross-validation in its fixed order (fold by fold, the models in the given
    order), each with its folder and fingerprint. A share ``I/N`` of the work is
    ``plan_runs(...)[I::N]``: deterministic, so that independent processes divide it."""
    folds = make_folds(corpus, protocol, k, cfg.seed)
    corpus_id, keys = corpus_identity(corpus), utterance_keys(corpus)
    data = _data_settings(normalisation, segment_frames, train_hop, feature_params)
    runs = []
    for f in range(len(folds)):
        split = split_fold(corpus, protocol, k, f, cfg.seed, selection, folds=folds)
        layout = fold_layout(protocol, k, cfg.seed, f, selection)
        for m in models:
            provenance = run_provenance(corpus, corpus_id, layout, replace(cfg, model=m), data,
                                        split, keys)
            runs.append(Run(f, m, run_folder(out_dir, m, f), split, provenance,
                            fingerprint(provenance["identity"])))
    return runs


def finished_result(run: Run) -> dict | None:
    """The stored result of ``run`` when it finished with its fingerprint and its best.pt (what
    cross_validate reuses), else None (reads only: for watching other processes' progress and
    counting the runs left)."""
    try:
        result = json.loads((run.run_dir / "result.json").read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(result, dict) and result.get("fingerprint") == run.fingerprint \
        and (run.run_dir / "best.pt").is_file()
    return result if ok else None


def cross_validate(corpus: Corpus, feats: list[torch.Tensor], models: list[str], cfg: TrainConfig,
                   out_dir: str | Path, *, protocol: str = "random", k: int = 10,
                   normalisation: str = "speaker", segment_frames: int = SEGMENT_FRAMES,
                   train_hop: int | None = None, resume: bool = True, progress: bool = True,
                   feature_params: dict | None = None, selection: float = 0.0,
                   last_k: int = 3, share: tuple[int, int] | None = None,
                   timing: Breakdown | None = None, figures: bool = True,
                   on_replace=None) -> dict:
    """Run every model on every fold; returns (and writes to out_dir/results.json) the per-fold
    metrics and the summary. Its ``config`` holds the training options shared by the models
    (``cfg`` without ``model``; the models are ``identity["models"]``).

    A fold is reused only when it finished (a readable result.json and its best.pt) with the
    fingerprint of this run (same corpus files, protocol, folds, seed, model, training and
    feature configuration); otherwise it is recomputed, with a warning naming what changed, and
    the files of the other run are removed first. An unreadable or partial result.json (a
    0-byte file of an old killed run) is recomputed with a warning. ``resume=False`` recomputes
    everything. ``selection`` > 0 holds out that fraction of each fold's training utterances
    for model selection and reports the fold's own held-out utterances as a test set (see
    split_fold). ``last_k``: the summary's mean over the last k epochs.

    Several processes may work in the same ``out_dir``: a run is trained or read only under the
    lock of its folder (_lock.py), so two processes never train the same run. A run locked by
    another process is left for later; this call then waits for it (saying so) and reuses its
    result. ``share=(I, N)`` trains only the runs ``plan_runs(...)[I::N]``, skips (naming them)
    those another process holds, writes no results.json and returns what it did:
    ``{"share", "trained", "reused", "busy"}`` (lists of run names). ``timing``: the
    breakdown the runs' phases are added to (see timing.py; the caller's, which may already
    hold the feature extraction), stored in results.json. ``figures=False``: the results hold
    no ``figures_data`` (no first fold's outputs, no reused checkpoint read for them).
    ``on_replace()``: called each time a run's folder has been cleared of what another run
    (or, with ``resume=False``, this run before) left in it, a finished result of other
    settings among them (the command line then removes the table that may report it; the cv
    that wrote that table checks its runs again after writing it, :func:`replaced_since`:
    whichever comes last, no table is left beside a fold it does not describe). Without one,
    ``out_dir/results.json`` is removed then, and before anything is trained (not by a share):
    an interrupted call leaves no table beside folds it replaced; the call that finishes writes
    it again."""
    from tqdm import tqdm

    timing = timing if timing is not None else Breakdown(cfg.device)
    feature_params = features_of(feats, feature_params)
    check_plan(corpus, models, protocol=protocol, k=k, seed=cfg.seed,
               normalisation=normalisation, selection=selection)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if dist.is_main() and share is None:  # (a run's folder is swept under its lock)
        sweep_stale(out_dir, recursive=False)
    if on_replace is None:  # (the command line withdraws its reports too: its own on_replace)
        def on_replace() -> None:
            if dist.is_main():
                (out_dir / "results.json").unlink(missing_ok=True)

        if share is None:
            on_replace()
    runs = plan_runs(corpus, models, cfg, out_dir, protocol=protocol, k=k,
                     normalisation=normalisation, segment_frames=segment_frames,
                     train_hop=train_hop, feature_params=feature_params, selection=selection)
    k_folds = runs[-1].fold + 1
    mine = runs if share is None else runs[share[0]::share[1]]
    data = _data_settings(normalisation, segment_frames, train_hop, feature_params)
    summaries: dict[tuple[int, str], dict] = {}
    figures_data: dict[str, dict] = {}
    cut: dict[int, tuple] = {}  # the segments of the fold in hand (one fold at a time)

    def segments(f: int, split) -> tuple:
        if f not in cut:
            cut.clear()
            with timing.phase("data"):
                cut[f] = _fold_segments(corpus, feats, *split, data)
        return cut[f]

    bar = tqdm(total=len(mine), desc="cross-validation", unit="run",
               disable=None if progress else True)

    def attempt(run: Run, wait: bool) -> bool:
        """Reuse or train ``run`` under its lock; False when another process holds it."""
        f, m, run_dir = run.fold, run.model, run.run_dir
        cfg_model = replace(cfg, model=m)
        # under torchrun rank 0 locks, waiting, and the other ranks follow it at the barriers
        with folder_lock(run_dir, wait=wait or dist.is_distributed()) if dist.is_main() \
                else contextlib.nullcontext(True) as held:
            if not held:
                return False
            if dist.is_main():
                sweep_stale(run_dir, recursive=False)
            summary = _finished(run_dir, run.provenance["identity"], run.fingerprint, resume,
                                run.name, on_replace)
            outputs = None
            if summary is None:
                outputs, summary = _train_run(cfg_model, corpus, segments(f, run.split), run.split,
                                              f, run.provenance, data, run_dir, resume=resume,
                                              progress=progress)
                timing.merge(summary["timing"])
                summary["reused"] = False
            else:
                summary["reused"] = True
            if f == 0 and share is None and figures:  # the first fold's validation outputs
                val_segs = segments(f, run.split)[1]
                if outputs is None:
                    with timing.phase("final evaluation"):
                        outputs = _outputs_of(run_dir / "best.pt", cfg_model, corpus, val_segs)
                figures_data[m] = {"alpha_em": outputs["alpha_em"],
                                   "alpha_sp": outputs["alpha_sp"], "z": outputs["z"],
                                   "labels": val_segs.label, "lengths": val_segs.lengths,
                                   "predicted": outputs["predicted"]}
        summaries[f, m] = summary
        bar.update()
        if progress and dist.is_main() and not sys.stderr.isatty():  # a log: one line a run
            print(f"{m} fold {f} of {k_folds}: utterance UAR "
                  f"{100 * summary['utterance_uar']:.2f} %"
                  + (" (reused)" if summary["reused"] else ""), file=sys.stderr, flush=True)
        return True

    busy = [run for run in mine if not attempt(run, wait=False)]
    for run in busy if share is None else ():
        _note(f"waiting for {run.name}: {holder(run.run_dir)} is training it")
        attempt(run, wait=True)
    bar.close()
    if share is not None:
        for run in busy:
            _note(f"skipped {run.name}: {holder(run.run_dir)} is training it")
        done = [r for r in mine if (r.fold, r.model) in summaries]
        return {"share": share, "busy": [r.name for r in busy],
                "trained": [r.name for r in done if not summaries[r.fold, r.model]["reused"]],
                "reused": [r.name for r in done if summaries[r.fold, r.model]["reused"]]}
    # (rank 0 reads the folders; under torchrun every rank follows its refusal)
    replaced = dist.broadcast(_replaced_run(runs) if dist.is_main() else None)
    if replaced is not None:
        raise UserError(replaced)
    results = {m: [summaries[f, m] for f in range(k_folds)] for m in models}
    # the options every model ran with; which models ran: identity["models"] (cfg.model is
    # not one of them: each run trains its own, in its folds' identity)
    shared = {key: v for key, v in asdict(cfg).items() if key != "model"}
    out = {"corpus": corpus.name, "protocol": protocol, "k": k_folds,
           "classes": corpus.classes, "config": shared,
           "identity": {"corpus": runs[0].provenance["identity"]["corpus"], "protocol": protocol,
                        "k": k_folds, "seed": cfg.seed, "selection": selection, "data": data,
                        "models": list(models)},
           "reported_on": "test" if selection else "validation", "selection": selection,
           "last_k": last_k,
           "summary": {m: summarise(results[m], selection > 0, last_k, display_name(m))
                       for m in models},
           "folds": results}
    out["fingerprint"] = fingerprint({"run": out["identity"], "folds": {
        m: [r["fingerprint"] for r in rows] for m, rows in results.items()}})
    # what trained the runs (not part of the fingerprint: shards may run on other nodes)
    out["environments"] = environments(r for rows in results.values() for r in rows)
    if len(out["environments"]) > 1 and dist.is_main():
        differ = environment_differences([e["environment"] for e in out["environments"]])
        warn_user(f"the table's runs were trained in {len(out['environments'])} environments "
                  f"(they differ in {', '.join(differ)}); results.json's 'environments' lists "
                  "them, each fold's result.json its own")
    out["timing"] = timing.as_dict()  # (not part of the fingerprint: it changes every run)
    if dist.is_main():
        write_json(out_dir / "results.json", out, indent=1)
    out["figures_data"] = figures_data
    return out


def _replaced_run(runs: list[Run]) -> str | None:
    """Why this cv must not report its runs (one whose folder another process replaced while
    this cv ran: a cv with other options on the same --out recomputes the folds it finds with
    other settings, and the table would give numbers no file beside it holds), or None."""
    for run in runs:
        if finished_result(run) is None:  # (its result.json: gone, or another fingerprint's)
            return (f"{run.name}: {run.run_dir} was replaced while this cv ran (another cv on "
                    "this --out with other options?); its numbers are no longer the ones this "
                    "table would report, so no table was written: run this cv again once the "
                    "other has finished (or give each set of options its own --out)")
    return None


def replaced_since(out_dir: str | Path, results: dict) -> str | None:
    """After the table of ``results`` is written into ``out_dir``: :func:`_replaced_run`'s
    reason when one of its runs was replaced since it was checked (a process with other options
    removes a fold's files first and the table then, see cross_validate's ``on_replace``; this
    check after the table's last write catches a removal before it), else None."""
    return _replaced_run([Run(row["fold"], model, run_folder(out_dir, model, row["fold"]), (), {},
                              row["fingerprint"])
                          for model, rows in results["folds"].items() for row in rows])


def without_figures_data(results: dict) -> dict:
    """A :func:`cross_validate` result as results.json holds it (no per-segment outputs)."""
    return {k: v for k, v in results.items() if k != "figures_data"}


def train_fold(corpus: Corpus, feats: list[torch.Tensor], cfg: TrainConfig, out_dir: str | Path,
               *, protocol: str, k: int, fold: int, selection: float = 0.0,
               normalisation: str = "speaker", segment_frames: int = SEGMENT_FRAMES,
               train_hop: int | None = None, feature_params: dict | None = None,
               resume: bool = False, progress: bool = True, on_epoch_end=None,
               announce=None, on_start=None) -> dict:
    """One model on one fold (``ssa-fast train``): the same split, provenance and files as a
    fold of :func:`cross_validate`; writes ``out_dir/result.json`` and returns the result
    (``announce(text)`` receives a one-line description of the split first; ``on_start()`` is
    called once everything is checked, before anything is written: see :func:`train`)."""
    feature_params = features_of(feats, feature_params)
    folds = check_plan(corpus, [cfg.model], protocol=protocol, k=k, seed=cfg.seed,
                       normalisation=normalisation, fold=fold, selection=selection)
    split = split_fold(corpus, protocol, k, fold, cfg.seed, selection, folds=folds)
    train_idx, val_idx, test_idx = split
    test = test_idx is not None
    data = _data_settings(normalisation, segment_frames, train_hop, feature_params)
    fold_segs = _fold_segments(corpus, feats, *split, data)
    if announce is not None:
        train_segs, val_segs, test_segs, _ = fold_segs
        announce(f"fold {fold} of {len(folds)} ({protocol}): {len(train_idx)} training / "
                 f"{len(val_idx)} validation" + (f" / {len(test_idx)} test" if test else "")
                 + f" utterances, {len(train_segs)} / {len(val_segs)}"
                 + (f" / {len(test_segs)}" if test else "") + " segments")
    provenance = run_provenance(corpus, corpus_identity(corpus),
                                fold_layout(protocol, k, cfg.seed, fold, selection), cfg, data,
                                split)
    res, summary = _train_run(cfg, corpus, fold_segs, split, fold, provenance, data,
                              Path(out_dir), resume=resume, progress=progress,
                              on_epoch_end=on_epoch_end, on_start=on_start)
    return {**res, **summary}
