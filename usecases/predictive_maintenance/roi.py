"""What a maintenance policy driven by the model is worth, on one market's test engines.

One decision per test engine, taken at its last observed cycle: maintain it when the predicted probability that
it fails within the horizon is >= ``threshold``. The engine truly fails within the horizon when its
``failure_within_horizon`` at that cycle is 1. With TP, FP, FN, TN counted over engines and positives = TP + FN::

    cost_no_model  = positives * cost_unplanned_failure             (run to failure: every failure is unplanned)
    cost_model     = TP * cost_planned_maintenance + FN * cost_unplanned_failure + FP * cost_needless_inspection
    savings        = cost_no_model - cost_model
    programme_cost = TP * cost_planned_maintenance + FP * cost_needless_inspection
    roi            = savings / programme_cost                         (0.0 when programme_cost is 0)

``roi`` is 0.0 when the policy maintains no engine: nothing is spent, so there is no return to measure (savings
are then 0 as well). Costs and ``threshold`` come from ``params``, falling back to ``defaults.toml``
(250000 / 40000 / 8000 and 0.5).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from .data import LABEL, read_defaults

COST_KEYS = ("cost_unplanned_failure", "cost_planned_maintenance", "cost_needless_inspection")


def maintenance_value(test_table: pd.DataFrame, scores: np.ndarray, params: Mapping[str, Any] | None = None) -> dict:
    """Cost, savings and ROI of maintaining the engines the model flags.

    Args:
        test_table: labelled test rows (``unit``, ``cycle``, ``failure_within_horizon``), any order.
        scores: predicted failure probability for each row of ``test_table``, in the same order.
        params: ``threshold`` and the three costs; missing keys come from ``defaults.toml``.

    Returns:
        dict of plain Python numbers: ``engines, positives, tp, fp, fn, tn`` (int), ``cost_no_model, cost_model,
        savings, programme_cost, roi, threshold`` (float).
    """
    settings = {**read_defaults(), **(params or {})}
    threshold = float(settings["threshold"])
    costs = {key: float(settings[key]) for key in COST_KEYS}
    scores = np.asarray(scores, dtype="float64").reshape(-1)
    if len(scores) != len(test_table):
        raise ValueError(f"maintenance_value: {len(scores)} scores for {len(test_table)} test rows")
    if np.isnan(scores).any():
        raise ValueError(f"maintenance_value: {int(np.isnan(scores).sum())} scores are NaN")

    last = _last_cycle_positions(test_table)
    truth = test_table[LABEL].to_numpy()[last] == 1
    maintain = scores[last] >= threshold
    tp, fp = int(np.sum(maintain & truth)), int(np.sum(maintain & ~truth))
    fn, tn = int(np.sum(~maintain & truth)), int(np.sum(~maintain & ~truth))

    cost_no_model = (tp + fn) * costs["cost_unplanned_failure"]
    programme_cost = tp * costs["cost_planned_maintenance"] + fp * costs["cost_needless_inspection"]
    cost_model = programme_cost + fn * costs["cost_unplanned_failure"]
    savings = cost_no_model - cost_model
    return {
        "engines": len(last),
        "positives": tp + fn,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "cost_no_model": cost_no_model,
        "cost_model": cost_model,
        "savings": savings,
        "programme_cost": programme_cost,
        "roi": savings / programme_cost if programme_cost else 0.0,
        "threshold": threshold,
    }


def _last_cycle_positions(table: pd.DataFrame) -> np.ndarray:
    """Row position of each unit's last observed cycle, in unit order."""
    order = np.lexsort((table["cycle"].to_numpy(), table["unit"].to_numpy()))
    units = table["unit"].to_numpy()[order]
    is_last = np.append(units[1:] != units[:-1], True) if len(units) else np.zeros(0, dtype=bool)
    return order[is_last]
