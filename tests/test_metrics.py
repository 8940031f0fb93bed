"""ssa_fast.metrics at its boundary: what it accepts and what it refuses (the numbers themselves
are checked against scikit-learn in tests/train/test_bookkeeping.py)."""

import json

import numpy as np
import pytest
import torch

from ssa_fast import metrics


def test_confusion_matrix_refuses_labels_that_are_not_class_indices():
    # a cast would truncate them: 0.7 counted as class 0, 1.2 as class 1
    with pytest.raises(ValueError, match=r"y_true must hold integer class indices.*0\.7"):
        metrics.confusion_matrix([0.7, 1.2], [0, 1], 2)
    with pytest.raises(ValueError, match=r"y_pred must hold integer class indices.*1\.9"):
        metrics.confusion_matrix([0, 1], np.array([0.0, 1.9]), 2)
    with pytest.raises(ValueError, match="y_true must hold integer class indices"):
        metrics.confusion_matrix([np.nan, 1.0], [0, 1], 2)
    with pytest.raises(ValueError, match="y_pred must hold integer class indices"):
        metrics.confusion_matrix([0, 1], ["a", "b"], 2)
    # whole numbers are class indices whatever their type: lists, floats, tensors, bools
    expected = np.array([[1, 0], [1, 1]])
    for y, p in (([0, 1, 1], [0, 0, 1]), ([0.0, 1.0, 1.0], np.array([0, 0, 1], np.uint8)),
                 (torch.tensor([0, 1, 1]), torch.tensor([False, False, True]))):
        cm = metrics.confusion_matrix(y, p, 2)
        assert cm.dtype == np.int64 and (cm == expected).all()


def test_every_metric_of_a_matrix_takes_the_nested_lists_results_json_stores():
    cm = np.array([[3, 1, 0], [2, 2, 0], [0, 0, 0]])
    stored = json.loads(json.dumps(cm.tolist()))  # as results.json holds it
    assert metrics.uar(stored) == metrics.uar(cm) == pytest.approx((3 / 4 + 2 / 4) / 2)
    assert metrics.weighted_accuracy(stored) == metrics.weighted_accuracy(cm) == 5 / 8
    assert metrics.recall_per_class(stored) == metrics.recall_per_class(cm) == [0.75, 0.5, None]
    assert metrics.macro_f1(stored) == metrics.macro_f1(cm)
    assert (metrics.normalised(stored) == metrics.normalised(cm)).all()
    assert metrics.scores(stored, "u") == metrics.scores(cm, "u")


def test_mean_normalised_is_the_mean_over_folds_of_each_class_recall():
    big = np.array([[8, 0], [8, 0]])  # 16 utterances: recall 1 and 0
    small = np.array([[1, 1], [0, 2]])  # 4 utterances: recall 0.5 and 1
    absent = np.array([[3, 1], [0, 0]])  # class 1 absent: left out of row 1's mean
    mean = metrics.mean_normalised([big, small.tolist(), absent])
    assert mean[0] == pytest.approx([(1 + 0.5 + 0.75) / 3, (0 + 0.5 + 0.25) / 3])
    assert mean[1] == pytest.approx([(1 + 0) / 2, (0 + 1) / 2])
    recalls = [metrics.recall_per_class(cm) for cm in (big, small, absent)]
    for c in range(2):
        assert mean[c, c] == pytest.approx(np.mean([r[c] for r in recalls if r[c] is not None]))
    # a summed matrix would weigh the large fold more: its recall of class 0 is 9/10
    assert metrics.normalised(big + small)[0, 0] == pytest.approx(0.9)
    assert np.isnan(metrics.mean_normalised([absent])[1]).all()
    with pytest.raises(ValueError, match="matrices"):
        metrics.mean_normalised([])


def test_last_k_values_are_fewer_for_a_shorter_history():
    history = [{"u": 0.25}, {"u": 0.5}]
    assert metrics.last_k_values(history, "u", 3) == [0.25, 0.5]
    assert metrics.last_k_values(history, "u", 1) == [0.5]
    assert metrics.last_k_mean(history, "u", 3) == pytest.approx(0.375)
