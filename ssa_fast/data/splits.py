"""Cross-validation splits (SPEC.md section 7). Each returns a list of (train, validation) index
arrays into the corpus; no utterance (or phrase, for the linguistic split) is in both."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def random_folds(n_items: int, k: int = 10, val_fraction: float = 0.2,
                 seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """IEMOCAP protocol: per fold a random split of the utterances, a different seed per fold."""
    if n_items < 2 or not 0 < val_fraction < 1:
        raise ValueError(f"need n_items >= 2 and 0 < val_fraction < 1, got {n_items}, "
                         f"{val_fraction}")
    n_val = max(1, round(val_fraction * n_items))
    folds = []
    for f in range(k):
        perm = np.random.default_rng([seed, f]).permutation(n_items)
        folds.append((np.sort(perm[n_val:]), np.sort(perm[:n_val])))
    return folds


def linguistic_folds(phrases: Sequence[str], k: int = 10, groups: int = 10,
                     val_groups: int = 2, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Att-HACK protocol: the phrases are split at random into `groups` groups; fold f validates
    on groups f .. f + val_groups - 1 (mod groups) and trains on the rest (80/20 with 10 groups)."""
    if any(p is None for p in phrases):
        raise ValueError("the linguistic split needs a phrase for every record")
    unique = np.array(sorted(set(phrases)))
    if len(unique) < groups:
        raise ValueError(f"{len(unique)} distinct phrases cannot form {groups} groups")
    order = np.random.default_rng(seed).permutation(len(unique))
    group_of = {unique[j]: i % groups for i, j in enumerate(order)}
    g = np.array([group_of[p] for p in phrases])
    folds = []
    for f in range(k):
        val = np.isin(g, [(f + j) % groups for j in range(val_groups)])
        folds.append((np.flatnonzero(~val), np.flatnonzero(val)))
    return folds


def leave_one_speaker_out(speakers: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Speaker-independent protocol: one fold per speaker, validated on that speaker alone."""
    speakers = np.asarray(speakers)
    return [(np.flatnonzero(speakers != s), np.flatnonzero(speakers == s))
            for s in sorted(set(speakers.tolist()))]
