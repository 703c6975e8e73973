"""Tests for usecases/predictive_maintenance/roi.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from usecases.predictive_maintenance import data as pm_data
from usecases.predictive_maintenance.data import LABEL, load_market
from usecases.predictive_maintenance.roi import maintenance_value

DATA = Path(pm_data.__file__).parent / "data"
KEYS = {"engines", "positives", "tp", "fp", "fn", "tn", "cost_no_model", "cost_model", "savings", "programme_cost", "roi", "threshold"}


def _five_engines() -> tuple[pd.DataFrame, np.ndarray]:
    """Five engines, two or three cycles each. Only the last cycle decides; earlier scores would flip it."""
    rows = [  # unit, cycle, failure_within_horizon, score
        (1, 1, 0, 0.1), (1, 2, 1, 0.9),              # fails, flagged            -> TP
        (2, 1, 1, 0.8), (2, 2, 1, 0.3),              # fails, missed             -> FN
        (3, 1, 0, 0.0), (3, 2, 0, 0.2), (3, 3, 0, 0.6),  # healthy, flagged     -> FP
        (4, 1, 0, 0.9), (4, 2, 0, 0.1),              # healthy, left alone       -> TN
        (5, 1, 1, 0.0), (5, 2, 1, 0.5),              # fails, score == threshold -> TP
    ]  # fmt: skip
    table = pd.DataFrame(rows, columns=["unit", "cycle", LABEL, "score"])
    return table.drop(columns="score"), table["score"].to_numpy()


def test_hand_computed_five_engines_with_default_costs():
    table, scores = _five_engines()
    value = maintenance_value(table, scores, {})
    # positives 3 (engines 1, 2, 5); TP 2, FN 1, FP 1, TN 1
    # no model: 3 * 250000 = 750000; model: 2 * 40000 + 1 * 250000 + 1 * 8000 = 338000
    # savings 412000; programme 2 * 40000 + 8000 = 88000; roi 412000 / 88000
    assert value == {
        "engines": 5,
        "positives": 3,
        "tp": 2,
        "fp": 1,
        "fn": 1,
        "tn": 1,
        "cost_no_model": 750000.0,
        "cost_model": 338000.0,
        "savings": 412000.0,
        "programme_cost": 88000.0,
        "roi": 412000.0 / 88000.0,
        "threshold": 0.5,
    }
    assert all(type(v) in (int, float) for v in value.values())


def test_custom_costs_threshold_and_row_order():
    table, scores = _five_engines()
    shuffled = np.random.default_rng(0).permutation(len(table))
    params = {"threshold": 0.25, "cost_unplanned_failure": 100, "cost_planned_maintenance": 10, "cost_needless_inspection": 1}
    value = maintenance_value(table.iloc[shuffled], scores[shuffled], params)
    # threshold 0.25: engines 1, 2, 5 flagged (TP 3), engine 3 flagged (FP 1), engine 4 not (TN 1)
    assert (value["tp"], value["fp"], value["fn"], value["tn"]) == (3, 1, 0, 1)
    assert value["cost_no_model"] == 300.0 and value["cost_model"] == 31.0 and value["programme_cost"] == 31.0
    assert value["savings"] == 269.0 and value["roi"] == 269.0 / 31.0 and value["threshold"] == 0.25


def test_no_engine_maintained_gives_zero_roi():
    table, scores = _five_engines()
    value = maintenance_value(table, scores, {"threshold": 0.95})
    assert (value["tp"], value["fp"], value["programme_cost"], value["savings"], value["roi"]) == (0, 0, 0.0, 0.0, 0.0)
    assert value["cost_model"] == value["cost_no_model"] == 750000.0


def test_perfect_scores_on_real_test_engines():
    test = load_market("FD001", DATA / "FD001", {}).test
    value = maintenance_value(test, test[LABEL].to_numpy(dtype=float), {})
    last = test.sort_values("cycle").groupby("unit").tail(1)
    assert set(value) == KEYS
    assert value["engines"] == 100 and value["positives"] == int(last[LABEL].sum()) == value["tp"]
    assert value["fp"] == value["fn"] == 0
    assert value["savings"] == value["positives"] * (250000 - 40000)


def test_scores_must_match_the_rows():
    table, scores = _five_engines()
    with pytest.raises(ValueError, match="10 scores for 11 test rows"):
        maintenance_value(table, scores[:-1], {})
    with pytest.raises(ValueError, match="NaN"):
        maintenance_value(table, np.where(scores > 0.85, np.nan, scores), {})
