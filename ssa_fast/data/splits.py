"""Cross-validation splits (design.md section 7). Each returns a list of (train, validation) index
arrays into the corpus; no utterance (or phrase, for the linguistic split) is in both.
:func:`check_folds` refuses a layout in which a class is absent from a fold's training or
validation part."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from ..errors import UserError

# Cross-validation protocols (train.cv.make_folds builds them): random 80/20 splits (IEMOCAP),
# linguistic (Att-HACK: no phrase in both parts), leave-one-speaker-out, leave-one-session-out.
PROTOCOLS = ("random", "linguistic", "loso", "loso-session")


def random_folds(n_items: int, k: int = 10, val_fraction: float = 0.2, seed: int = 0,
                 labels: Sequence[int] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """IEMOCAP protocol: per fold a random split of the utterances, a different seed per fold.

    With ``labels`` the split is stratified: each class gives ``round(val_fraction * n_c)`` of
    its ``n_c`` utterances to validation, at least one and never all (a class of one utterance
    stays in training), so that every class is trained on and, when it can be, validated on."""
    if n_items < 2 or not 0 < val_fraction < 1:
        raise UserError(f"need n_items >= 2 and 0 < val_fraction < 1, got {n_items}, "
                         f"{val_fraction}")
    if labels is not None and len(labels) != n_items:
        raise UserError(f"labels has {len(labels)} entries for {n_items} items")
    strata = [np.arange(n_items)] if labels is None else \
        [np.flatnonzero(np.asarray(labels) == c) for c in np.unique(np.asarray(labels))]
    folds = []
    for f in range(k):
        rng = np.random.default_rng([seed, f])
        val = []
        for items in strata:
            n_val = min(max(1, round(val_fraction * len(items))), len(items) - 1)
            val.append(rng.permutation(items)[:n_val])
        val = np.sort(np.concatenate(val))
        folds.append((np.setdiff1d(np.arange(n_items), val), val))
    return folds


def linguistic_folds(phrases: Sequence[str], k: int = 10, groups: int = 10,
                     val_groups: int = 2, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Att-HACK protocol: the phrases are split at random into `groups` groups; fold f validates
    on groups f .. f + val_groups - 1 (mod groups) and trains on the rest (80/20 with 10 groups)."""
    if any(p is None for p in phrases):
        raise UserError("the linguistic split needs a phrase for every record")
    unique = np.array(sorted(set(phrases)))
    if len(unique) < groups:
        raise UserError(f"{len(unique)} distinct phrases cannot form {groups} groups")
    order = np.random.default_rng(seed).permutation(len(unique))
    group_of = {unique[j]: i % groups for i, j in enumerate(order)}
    g = np.array([group_of[p] for p in phrases])
    folds = []
    for f in range(k):
        val = np.isin(g, [(f + j) % groups for j in range(val_groups)])
        folds.append((np.flatnonzero(~val), np.flatnonzero(val)))
    return folds


def _leave_one_group_out(groups: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """One fold per group (in sorted order), validated on that group alone."""
    groups = np.asarray(groups)
    return [(np.flatnonzero(groups != g), np.flatnonzero(groups == g))
            for g in sorted(set(groups.tolist()))]


def leave_one_speaker_out(speakers: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Speaker-independent protocol: one fold per speaker, validated on that speaker alone."""
    unknown = sum(not s for s in speakers)
    if unknown:
        raise UserError(f"leave-one-speaker-out needs a speaker for every utterance; {unknown} "
                        f"of {len(speakers)} have none")
    return _leave_one_group_out(speakers)


def iemocap_session(speaker: str) -> str | None:
    """``"Ses03M"`` -> ``"Ses03"``; None for a speaker not named like IEMOCAP's."""
    m = re.fullmatch(r"(Ses\d\d)[FM]", speaker or "")
    return m.group(1) if m else None


def leave_one_session_out(speakers: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """IEMOCAP's speaker-independent protocol: one fold per session (5 with the full corpus),
    validated on the session's two speakers, trained on the other sessions. Sessions come from
    the speakers of load_iemocap (``Ses01F`` -> ``Ses01``)."""
    sessions = [iemocap_session(s) for s in speakers]
    odd = sorted({s for s, ses in zip(speakers, sessions, strict=True) if ses is None})
    if odd:
        raise UserError(f"leave-one-session-out needs IEMOCAP speakers (Ses01F ... Ses05M), got "
                        f"{', '.join(map(repr, odd[:5]))}{' ...' if len(odd) > 5 else ''}")
    if len(set(sessions)) < 2:
        raise UserError(f"leave-one-session-out needs at least 2 sessions, the corpus has "
                        f"{sorted(set(sessions))}")
    return _leave_one_group_out(sessions)


def check_folds(folds: list[tuple[np.ndarray, np.ndarray]], labels: Sequence[int],
                classes: Sequence[str], what: str = "") -> list[tuple[np.ndarray, np.ndarray]]:
    """``folds`` if every class has training and validation utterances in every fold, else a
    ValueError naming the class and the fold: a model cannot learn a class it never sees, and a
    class missing from validation leaves its recall (and UAR) undefined. Checked before any
    training, so that a run does not stop after its first folds."""
    labels = np.asarray(labels)
    for f, (tr, va) in enumerate(folds):
        for part, idx in (("training", tr), ("validation", va)):
            present = set(labels[np.asarray(idx, dtype=np.int64)].tolist())
            absent = [c for i, c in enumerate(classes) if i not in present]
            if absent:
                n = {c: int((labels == i).sum()) for i, c in enumerate(classes)}
                counts = ", ".join(f"{c!r}: {n[c]}" for c in absent)
                raise UserError(
                    f"class{'es' * (len(absent) > 1)} {', '.join(map(repr, absent))} "
                    f"{'have' if len(absent) > 1 else 'has'} no {part} utterance in fold {f}"
                    f"{' of ' + what if what else ''} (utterances in the corpus: {counts}); "
                    "add data for the class, drop it from the corpus, or choose another "
                    "protocol / number of folds")
    return folds
