"""Scoring a trained model on a labelled corpus (``ssa-fast evaluate``): in the checkpoint's own
fold layout and without the utterances it was trained on (evaluation_subset), with the
prediction engine's classify (the same segments, normalisation and pooling as prediction)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from ..metrics import confusion_matrix, scores
from ..predict.engine import TrainedModel, classify


def score(trained: TrainedModel, features: list[torch.Tensor], labels: list[str],
          speakers: list[str | None], batch: int | None = None,
          files: list[str] | None = None) -> dict:
    """Segment- and utterance-level UAR, WA, macro F1, per-class recall and confusion matrices
    of a labelled set of utterances, and ``predictions``: per utterance, in order, its
    ``file`` (``files``, when given), ``label`` and ``predicted`` class; ``normalisation``:
    how many utterances each kind of statistics normalised ({"speaker": n, "utterance": m}, see
    Normaliser.applied); ``batch`` segments a forward pass (None: models.scoring.scoring_batch's).
    Labels are class names; a name the model does not know is an error."""
    unknown = sorted(set(labels) - set(trained.classes))
    if unknown:
        raise ValueError(f"labels {unknown} are not classes of the model ({trained.classes})")
    y = np.array([trained.classes.index(c) for c in labels])
    probs, segs, out = classify(trained, features, speakers, batch)
    K = len(trained.classes)
    seg_cm = confusion_matrix(y[segs.utterance.numpy()], out["logp"].argmax(1).numpy(), K)
    utt_cm = confusion_matrix(y, probs.argmax(1).numpy(), K)
    return {**scores(seg_cm, "segment"), **scores(utt_cm, "utterance"),
            "segment_cm": seg_cm.tolist(), "utterance_cm": utt_cm.tolist(),
            "n_utterances": len(labels), "n_segments": len(segs),
            "normalisation": dict(Counter(map(trained.normaliser.applied, speakers))),
            "predictions": [{**({} if files is None else {"file": files[j]}), "label": labels[j],
                             "predicted": trained.classes[int(i)]}
                            for j, i in enumerate(probs.argmax(1))]}


def fold_layout_to_score(trained: TrainedModel, fold: int, protocol: str | None = None,
                         k: int | None = None, seed: int | None = None, warn=None) -> dict:
    """The checkpoint's fold layout with validation fold ``fold``; ``protocol``, ``k`` and
    ``seed`` (None: the checkpoint's) or ``fold`` other than the checkpoint's raise a UserError
    naming them (that fold's "validation" set would be made mostly of training utterances).
    Needs no data: the command line calls it before loading any audio."""
    from ..errors import UserError
    from .fingerprint import describe_layout

    layout = trained.fold_layout
    if layout is None:
        if protocol is None or k is None:
            raise UserError(f"--fold {fold}: the checkpoint does not record its fold layout "
                            "(written by an older version): give the --protocol and --folds "
                            "(and --seed, default 0) it was trained with")
        if warn is not None:
            warn("the checkpoint does not record its fold layout (written by an older "
                 "version): cannot check that this fold's validation set was held out")
        return {"protocol": protocol, "k": k, "seed": seed or 0, "fold": fold,
                "selection": 0.0}
    asked = {"protocol": protocol, "k": k, "seed": seed, "fold": fold}
    option = {"protocol": "--protocol", "k": "--folds", "seed": "--seed", "fold": "--fold"}
    wrong = [f"{option[key]} {value}" for key, value in asked.items()
             if value is not None and value != layout[key]]
    if wrong:
        raise UserError(f"{' '.join(wrong)}: the checkpoint was trained on "
                        f"{describe_layout(layout)}; another fold layout would score its "
                        "training utterances (leave these options out to use the checkpoint's)")
    return layout


def evaluation_subset(trained: TrainedModel, corpus, *, fold: int | None = None,
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
    from .cv import split_fold
    from .fingerprint import corpus_identity, describe_layout, used_positions

    warn = warn or (lambda text: None)
    notes: dict = {"fold_layout": trained.fold_layout}
    idx, where = list(range(len(corpus))), "all utterances"
    if fold is not None:
        layout = fold_layout_to_score(trained, fold, protocol, k, seed, warn)
        then = trained.identity
        if then and then["corpus"]["hash"] != corpus_identity(corpus)["hash"]:
            warn(f"the corpus differs from the one the checkpoint was trained on "
                 f"({then['corpus']['utterances']} utterances then, {len(corpus)} now, "
                 "or changed files): its folds are rebuilt on this corpus")
        _, val_idx, test_idx = split_fold(corpus, layout["protocol"], layout["k"], fold,
                                          layout["seed"], layout.get("selection") or 0.0,
                                          check=False)
        idx = [int(i) for i in (val_idx if test_idx is None else test_idx)]
        where = (f"{'test' if test_idx is not None else 'validation'} set of fold {fold} "
                 f"({describe_layout(layout)})")
    if trained.train_utterances is None:
        warn("the checkpoint does not record its training utterances (written by an older "
             "version): cannot check whether any scored utterance was used in training")
        notes["training_utterances"] = None
        notes["epoch_selection_utterances"] = _epoch_choosers(trained, corpus, idx)
        return idx, where, notes
    seen = used_positions(corpus, idx, trained.used_utterances)
    notes["training_utterances"] = len(seen)
    if seen and include_training:
        warn(f"{len(seen)} of the {len(idx)} utterances scored were in the checkpoint's "
             "training set (--include-training): these scores are not a held-out measurement")
    elif seen:
        drop = set(seen)
        if len(drop) == len(idx):
            raise UserError(f"all {len(idx)} utterances scored ({where}) were used to train "
                            "the checkpoint: nothing held out to score")
        selected = (trained.fold_layout or {}).get("selection")
        chose = " or chose its epoch on them" if selected else ""
        warn(f"excluded {len(seen)} of the {len(idx)} utterances: the checkpoint was trained "
             f"on them{chose} (--include-training scores them too)")
        idx = [i for j, i in enumerate(idx) if j not in drop]
        where += ", without the training utterances"
    notes["excluded_training"] = 0 if include_training else len(seen)
    choosers = _epoch_choosers(trained, corpus, idx)
    notes["epoch_selection_utterances"] = choosers  # (None: not known)
    if choosers:
        warn(f"{choosers} of the {len(idx)} utterances scored chose the checkpoint's epoch "
             "(its fold's validation set, trained without --selection-split): on them the "
             "score is the paper protocol's optimistic one, not a held-out measurement "
             "(--selection-split keeps a test set apart)")
    elif choosers is None and seen and not (trained.fold_layout or {}).get("selection"):
        # the training corpus listed otherwise: its fold's split cannot be rebuilt on it, but
        # what is left of it after the training utterances is most likely that fold's
        # validation set, which chose the epoch
        warn(f"this listing holds the checkpoint's training corpus, listed otherwise (another "
             f"manifest or order): whether the {len(idx)} utterances scored include those that "
             "chose its epoch (its fold's validation set, trained without --selection-split) "
             "cannot be told; if they do, the score is the paper protocol's optimistic one, not "
             "a held-out measurement (--selection-split keeps a test set apart)")
    return idx, where, notes


def _epoch_choosers(trained: TrainedModel, corpus, idx: list[int]) -> int | None:
    """How many of the utterances ``idx`` chose the checkpoint's epoch (its fold's validation
    utterances, where it was trained without a selection split): by their keys where the
    checkpoint records them (layout 4: the same file or audio through any listing, a manifest
    of the validation files alone included), else by rebuilding its fold; None where that
    cannot be known: no recorded layout or split, or a corpus on which the checkpoint's fold is
    not the split it was trained on (another corpus, or the same files listed in another order,
    which the random protocol splits otherwise), checked against the split's recorded digest."""
    from ..errors import UserError
    from .cv import split_fold
    from .fingerprint import split_digest, used_positions, utterance_keys

    if trained.epoch_utterances is not None:
        return len(used_positions(corpus, idx, trained.epoch_utterances))
    layout = trained.fold_layout
    if not layout:
        return None
    if layout.get("selection"):
        return 0
    then = trained.identity or {}
    if "split" not in then:
        return None
    try:  # (a corpus on which the layout has fewer folds: one speaker of a loso run)
        train_idx, val_idx, _ = split_fold(corpus, layout["protocol"], layout["k"],
                                           layout["fold"], layout["seed"], check=False)
    except (UserError, ValueError):
        return None
    if split_digest(utterance_keys(corpus), train_idx, None, val_idx) != then["split"]:
        return None
    return len(set(map(int, val_idx)) & set(idx))
