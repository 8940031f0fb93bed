"""Metrics: confusion matrices, unweighted average recall (UAR = macro recall), weighted accuracy
(WA), macro F1, per-class recall, the mean of the last k epochs and the t-based 95% confidence
interval over folds used in the paper's Table 1. All are computed from confusion matrices, so a
fold's numbers can be recomputed from its stored matrices (tested against scikit-learn); a matrix
may be an array or nested lists (the form results.json stores)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _class_indices(name: str, y) -> np.ndarray:
    """``y`` as int64 class indices; values that are not whole numbers are refused (a cast
    would truncate them: 0.7 counted as class 0)."""
    v = np.asarray(y)
    if v.dtype.kind in "biu":
        return v.astype(np.int64)
    if v.dtype.kind != "f":
        raise ValueError(f"{name} must hold integer class indices, got dtype {v.dtype}")
    bad = ~np.isfinite(v) | (v != np.round(v))
    if bad.any():
        raise ValueError(f"{name} must hold integer class indices, got "
                         f"{v[bad].tolist()[:5]}")
    return v.astype(np.int64)


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts; row = true class, column = predicted class. The labels
    are class indices: integers, or floats that are whole numbers (others are refused)."""
    t, p = _class_indices("y_true", y_true), _class_indices("y_pred", y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in shape: {t.shape} vs {p.shape}")
    for name, v in (("y_true", t), ("y_pred", p)):
        if v.size and (v.min() < 0 or v.max() >= n_classes):
            raise ValueError(f"{name} holds class indices outside [0, {n_classes}): "
                             f"{sorted(set(v[(v < 0) | (v >= n_classes)].tolist()))[:5]}")
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def uar(cm: np.ndarray) -> float:
    """Mean over classes of recall; classes absent from the reference are left out."""
    cm = np.asarray(cm)
    support = cm.sum(axis=1)
    present = support > 0
    if not present.any():
        raise ValueError("UAR of an empty confusion matrix")
    return float((np.diag(cm)[present] / support[present]).mean())


def recall_per_class(cm: np.ndarray) -> list[float | None]:
    """Recall of every class (None for a class absent from the reference)."""
    cm = np.asarray(cm)
    support = cm.sum(axis=1)
    return [float(cm[i, i] / support[i]) if support[i] else None for i in range(len(cm))]


def weighted_accuracy(cm: np.ndarray) -> float:
    """WA: the fraction of all items classified right (classes weighted by their support)."""
    cm = np.asarray(cm)
    total = cm.sum()
    if total == 0:
        raise ValueError("WA of an empty confusion matrix")
    return float(np.trace(cm) / total)


def macro_f1(cm: np.ndarray) -> float:
    """Mean over classes of F1 = 2 TP / (2 TP + FP + FN); classes that are neither in the
    reference nor predicted are left out (scikit-learn's ``labels=present`` convention)."""
    cm = np.asarray(cm)
    tp = np.diag(cm).astype(float)
    denom = cm.sum(axis=0) + cm.sum(axis=1)  # 2 TP + FP + FN
    present = denom > 0
    if not present.any():
        raise ValueError("F1 of an empty confusion matrix")
    return float((2 * tp[present] / denom[present]).mean())


def scores(cm, prefix: str) -> dict:
    """UAR, WA, macro F1 and per-class recall of one confusion matrix, keys ``{prefix}_uar`` ..."""
    cm = np.asarray(cm)
    return {f"{prefix}_uar": uar(cm), f"{prefix}_wa": weighted_accuracy(cm),
            f"{prefix}_macro_f1": macro_f1(cm), f"{prefix}_recall": recall_per_class(cm)}


def last_k_values(history: Sequence[dict], key: str, k: int) -> list:
    """The values of ``key`` in the last ``k`` epochs of a history: fewer if it is shorter (a
    run of fewer epochs, or stopped early), which the caller should say."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    values = [h[key] for h in history[-k:] if h.get(key) is not None]
    if not values:
        raise ValueError(f"no {key!r} in the history")
    return values


def last_k_mean(history: Sequence[dict], key: str, k: int) -> float:
    """Mean of ``key`` over the last ``k`` epochs of a history (over fewer if it is shorter:
    see :func:`last_k_values`): a measure that does not depend on picking the luckiest
    epoch."""
    return float(np.mean(last_k_values(history, key, k)))


def normalised(cm: np.ndarray) -> np.ndarray:
    """Rows divided by their totals (the paper's Figure 4)."""
    cm = np.asarray(cm)
    support = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, support, out=np.zeros(cm.shape, dtype=float), where=support > 0)


def mean_normalised(cms) -> np.ndarray:
    """The mean of row-normalised confusion matrices (one per fold, each (K, K)): row i is the
    mean, over the matrices whose reference holds class i, of their normalised row i, so that
    the diagonal is the mean over folds of each class's recall (``recall_per_class``, folds
    without the class left out); NaN where no matrix holds the class."""
    stack = np.asarray(cms, dtype=float)
    if stack.ndim != 3 or stack.shape[0] == 0 or stack.shape[1] != stack.shape[2]:
        raise ValueError(f"expected a non-empty list of (K, K) matrices, got shape {stack.shape}")
    support = stack.sum(axis=2, keepdims=True)  # (n, K, 1)
    rows = np.divide(stack, support, out=np.zeros(stack.shape), where=support > 0)
    held = (support > 0).sum(axis=0)  # (K, 1): matrices holding each class
    return np.where(held > 0, rows.sum(axis=0) / np.maximum(held, 1), np.nan)


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% confidence interval, Student t with n - 1 dof)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise ValueError("no values")
    if v.size == 1:
        return float(v[0]), float("nan")
    # (Student t's quantile itself, which scipy.stats.t.ppf calls: importing scipy.stats takes
    # ~0.4 s, which cross_validate called from Python then saves; `ssa-fast cv` imports it anyway
    # through scikit-learn's t-SNE for its figures)
    from scipy.special import stdtrit

    half = stdtrit(v.size - 1, 0.975) * v.std(ddof=1) / math.sqrt(v.size)
    return float(v.mean()), float(half)
