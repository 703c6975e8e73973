"""fedpipe.metrics: the numbers a market reports, checked against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedpipe.metrics import classification_metrics

Y = np.array([0, 0, 1, 1])
SCORES = np.array([0.1, 0.6, 0.4, 0.9])


def test_metrics_on_a_tiny_case():
    m = classification_metrics(Y, SCORES)
    # AUC: of the 4 (positive, negative) pairs, (0.4, 0.6) is the only one ranked wrongly.
    assert m["auc"] == pytest.approx(3 / 4)
    # At 0.5 the predictions are [0, 1, 0, 1]: TP 1, FP 1, FN 1.
    assert m["precision"] == pytest.approx(1 / 2)
    assert m["recall"] == pytest.approx(1 / 2)
    # Log loss: the probability given to the true class is 0.9, 0.4, 0.4, 0.9.
    assert m["log_loss"] == pytest.approx(-(2 * math.log(0.9) + 2 * math.log(0.4)) / 4)
    assert m["rows"] == 4


def test_threshold_is_inclusive_and_moves_precision_and_recall():
    m = classification_metrics(Y, SCORES, threshold=0.4)  # predictions [0, 1, 1, 1]
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(1.0)
    assert m["auc"] == pytest.approx(3 / 4)  # ranking metrics ignore the threshold


def test_one_class_gives_nan_auc_but_the_rest():
    m = classification_metrics(np.zeros(3), np.array([0.2, 0.7, 0.1]))
    assert math.isnan(m["auc"])
    assert m["precision"] == 0.0 and m["recall"] == 0.0  # one false positive, no positives to find
    assert m["log_loss"] == pytest.approx(-(math.log(0.8) + math.log(0.3) + math.log(0.9)) / 3)


def test_certain_wrong_scores_give_a_finite_log_loss():
    m = classification_metrics([1, 0], [0.0, 1.0])
    assert m["log_loss"] == pytest.approx(-math.log(1e-7))  # clipped, not infinite
    assert m["auc"] == 0.0


def test_values_are_plain_floats():
    m = classification_metrics(Y, SCORES.astype(np.float32))
    assert all(type(v) is float for k, v in m.items() if k != "rows") and type(m["rows"]) is int
