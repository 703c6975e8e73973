"""What recommending weight on bit (WOB) and rotary speed (RPM) is worth on one well's held-out section.

The held-out rows are walked in depth order. Row *i* stands for ``step_i`` metres (the distance to the next row,
capped at ``max_step_m`` so a gap in the log does not count as drilling) drilled at the observed ROP ``r_i``::

    hours_actual   = sum_i step_i / r_i
    candidates_i   = grid_points x grid_points (WOB, RPM) pairs spanning the min..max of WOB and of RPM this well
                     used over the last window_m metres of the section (rows at depth d_i - window_m .. d_i):
                     settings already drilled with, never beyond them
    speedup_i      = clip(max_c predict(candidate c) / predict(actual settings), 1, max_speedup)
                     if the model predicts r_i within trust_tolerance (|predict - r_i| <= trust_tolerance * r_i),
                     else 1 (no credit where the model is wrong about what actually happened)
    hours_model    = sum_i step_i / (r_i * speedup_i)
    cost_no_model  = hours_actual * rig_spread_rate_per_day / 24
    programme_cost = hours_actual * programme_cost_per_hour
    cost_model     = hours_model * rig_spread_rate_per_day / 24 + programme_cost
    savings        = cost_no_model - cost_model
    roi            = savings / programme_cost

Assumptions, stated plainly: the model's predicted *relative* gain applies to the observed ROP (its absolute
error cancels in the ratio); the other parameters (torque, pressures, flow, mud) stay as observed when WOB and
RPM change, although torque and standpipe pressure would in reality respond; the driller follows every credited
recommendation; tripping, connections and flat time are not affected. It is an estimate from held-out logs,
not a field trial.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from .data import LABEL, read_defaults
from .features import CONTROLS

PARAMS = ("rig_spread_rate_per_day", "programme_cost_per_hour", "window_m", "grid_points", "max_speedup",
          "trust_tolerance", "max_step_m")


def drilling_value(test_table: pd.DataFrame, scores: np.ndarray, params: Mapping[str, Any] | None = None,
                   predict: Callable[[pd.DataFrame], np.ndarray] | None = None) -> dict:
    """Rig time and cost saved on the held-out section by the model's WOB/RPM recommendations.

    Args:
        test_table: held-out rows of one well (``depth_m``, the features, ``rop_m_per_h``), any order.
        scores: the model's predicted ROP for each row of ``test_table``, in the same order.
        params: the keys in ``PARAMS``; missing keys come from ``defaults.toml``; other keys are ignored.
        predict: the same model as a function of a table (what-if rows); without it no setting can be
            recommended and the speed-up is 1 everywhere.

    Returns:
        dict of plain numbers: ``cost_no_model, cost_model, savings, programme_cost, roi`` plus ``section_m,
        hours_actual, hours_model, hours_saved, credited_share`` (share of rows with a speed-up > 1) and
        ``mean_speedup``.
    """
    p = _check(params or {})
    scores = np.asarray(scores, dtype="float64").reshape(-1)
    if len(scores) != len(test_table):
        raise ValueError(f"drilling_value: {len(scores)} scores for {len(test_table)} test rows")
    order = np.argsort(test_table["depth_m"].to_numpy(), kind="stable")
    table = test_table.iloc[order].reset_index(drop=True)
    scores = scores[order]
    rop = np.clip(table[LABEL].to_numpy(dtype="float64"), 1e-3, None)
    depth = table["depth_m"].to_numpy(dtype="float64")
    steps = _steps(depth, p["max_step_m"])

    speedup = np.ones(len(table))
    if predict is not None and len(table):
        best = _best_prediction(table, depth, predict, p["window_m"], int(p["grid_points"]))
        trusted = (np.abs(scores - rop) <= p["trust_tolerance"] * rop) & (scores > 0)
        speedup = np.where(trusted, np.clip(best / np.where(scores > 0, scores, 1.0), 1.0, p["max_speedup"]), 1.0)

    hours_actual = float(np.sum(steps / rop))
    hours_model = float(np.sum(steps / (rop * speedup)))
    hourly_rig = p["rig_spread_rate_per_day"] / 24.0
    programme_cost = hours_actual * p["programme_cost_per_hour"]
    cost_no_model = hours_actual * hourly_rig
    cost_model = hours_model * hourly_rig + programme_cost
    savings = cost_no_model - cost_model
    return {
        "cost_no_model": cost_no_model, "cost_model": cost_model, "savings": savings,
        "programme_cost": programme_cost, "roi": savings / programme_cost if programme_cost else 0.0,
        "section_m": float(steps.sum()), "hours_actual": hours_actual, "hours_model": hours_model,
        "hours_saved": hours_actual - hours_model,
        "credited_share": float(np.mean(speedup > 1.0)) if len(speedup) else 0.0,
        "mean_speedup": float(np.mean(speedup)) if len(speedup) else 1.0,
    }


def window_ranges(table: pd.DataFrame, depth: np.ndarray, window_m: float) -> dict[str, np.ndarray]:
    """Per row, the min and max of each control over rows at depth ``d - window_m .. d`` (depth-sorted rows)."""
    start = np.searchsorted(depth, depth - window_m, side="left")
    ranges = {}
    for control in CONTROLS:
        values = table[control].to_numpy(dtype="float64")
        lo, hi = np.empty(len(values)), np.empty(len(values))
        for i, s in enumerate(start):
            lo[i], hi[i] = values[s:i + 1].min(), values[s:i + 1].max()
        ranges[control] = np.stack([lo, hi], axis=1)
    return ranges


def _best_prediction(table: pd.DataFrame, depth: np.ndarray, predict: Callable, window_m: float,
                     points: int) -> np.ndarray:
    """The highest predicted ROP over the candidate (WOB, RPM) grid of each row."""
    ranges = window_ranges(table, depth, window_m)
    share = np.linspace(0.0, 1.0, points)
    a, b = np.meshgrid(share, share, indexing="ij")
    a, b = a.ravel(), b.ravel()  # points**2 candidates, as fractions of each range
    n, k = len(table), len(a)
    what_if = table.loc[np.repeat(np.arange(n), k)].reset_index(drop=True)
    for control, frac in zip(CONTROLS, (a, b)):
        lo, hi = ranges[control][:, 0], ranges[control][:, 1]
        what_if[control] = (lo[:, None] + (hi - lo)[:, None] * frac[None, :]).ravel()
    return np.asarray(predict(what_if), dtype="float64").reshape(n, k).max(axis=1)


def _steps(depth: np.ndarray, max_step: float) -> np.ndarray:
    if len(depth) < 2:
        return np.zeros(len(depth))
    forward = np.diff(depth)
    steps = np.append(forward, np.median(forward))
    return np.clip(steps, 0.0, max_step)


def _check(params: Mapping[str, Any]) -> dict[str, float]:
    merged = {**read_defaults(), **params}
    out = {}
    for key in PARAMS:
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or value < 0:
            raise ValueError(f"drilling ROI parameter '{key}' must be a number >= 0, got {value!r}")
        out[key] = float(value)
    if out["grid_points"] < 2 or not out["grid_points"].is_integer():
        raise ValueError(f"drilling ROI parameter 'grid_points' must be a whole number >= 2, got {out['grid_points']!r}")
    if out["max_speedup"] < 1:
        raise ValueError(f"drilling ROI parameter 'max_speedup' must be >= 1, got {out['max_speedup']!r}")
    return out
