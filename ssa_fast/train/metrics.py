"""Metrics: confusion matrices, unweighted average recall (UAR = macro recall), the t-based 95%
confidence interval over folds used in the paper's Table 1."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts; row = true class, column = predicted class."""
    t, p = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
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
    support = cm.sum(axis=1)
    present = support > 0
    if not present.any():
        raise ValueError("UAR of an empty confusion matrix")
    return float((np.diag(cm)[present] / support[present]).mean())


def normalised(cm: np.ndarray) -> np.ndarray:
    """Rows divided by their totals (the paper's Figure 4)."""
    support = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, support, out=np.zeros(cm.shape, dtype=float), where=support > 0)


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% confidence interval, Student t with n - 1 dof)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise ValueError("no values")
    if v.size == 1:
        return float(v[0]), float("nan")
    from scipy import stats

    half = stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return float(v.mean()), float(half)
