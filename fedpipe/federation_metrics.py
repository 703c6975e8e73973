"""Federation-level metrics from sufficient statistics the markets send, never from averaging market scores.

Each market computes :func:`sufficient_stats` on its own held-out rows (inside the market) and seals them; the
centre adds them up with :func:`federation_metrics`:

- classification: a histogram of scores for positives and one for negatives (``BINS`` equal bins on [0, 1]),
  confusion counts at the threshold and the summed log loss -> AUC (pairs within one bin count as ties, so the
  AUC is exact to within the share of such pairs), precision, recall, log loss;
- regression: row count, sums of squared and absolute errors, sums of the target and its square -> RMSE, MAE, R².
"""

from __future__ import annotations

from typing import Any

import numpy as np

BINS = 1000


def sufficient_stats(kind: str, y_true: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """What one market contributes to the federation's metrics: counts and sums, no rows."""
    y = np.asarray(y_true, dtype="float64").ravel()
    s = np.asarray(scores, dtype="float64").ravel()
    if len(y) != len(s):
        raise ValueError(f"sufficient_stats: {len(s)} scores for {len(y)} labels")
    if kind == "regression":
        err = s - y
        return {"kind": kind, "n": int(len(y)), "sse": float(err @ err), "sae": float(np.abs(err).sum()),
                "y_sum": float(y.sum()), "y_sumsq": float(y @ y)}
    if kind != "classification":
        raise ValueError(f"sufficient_stats: kind must be 'classification' or 'regression', got {kind!r}")
    positive = y.astype(int) == 1
    p = np.clip(s, 1e-7, 1 - 1e-7)
    edges = np.linspace(0.0, 1.0, BINS + 1)
    predicted = s >= threshold
    return {
        "kind": kind, "n": int(len(y)),
        "hist_pos": np.histogram(np.clip(s[positive], 0, 1), bins=edges)[0].tolist(),
        "hist_neg": np.histogram(np.clip(s[~positive], 0, 1), bins=edges)[0].tolist(),
        "tp": int((predicted & positive).sum()), "fp": int((predicted & ~positive).sum()),
        "fn": int((~predicted & positive).sum()), "tn": int((~predicted & ~positive).sum()),
        "log_loss_sum": float(-(np.log(p[positive]).sum() + np.log(1 - p[~positive]).sum())),
    }


def _auc(hist_pos: np.ndarray, hist_neg: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties (same bin) counted one half."""
    n_pos, n_neg = hist_pos.sum(), hist_neg.sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    negatives_below = np.concatenate([[0], np.cumsum(hist_neg)[:-1]])
    return float((hist_pos * (negatives_below + 0.5 * hist_neg)).sum() / (n_pos * n_neg))


def federation_metrics(stats: list[dict[str, Any]]) -> dict[str, float]:
    """The federation's metrics from every market's sufficient statistics."""
    if not stats:
        raise ValueError("no statistics to combine")
    kinds = {s["kind"] for s in stats}
    if len(kinds) != 1:
        raise ValueError(f"statistics of different kinds cannot be combined: {sorted(kinds)}")
    n = sum(s["n"] for s in stats)
    if kinds == {"regression"}:
        sse, sae = sum(s["sse"] for s in stats), sum(s["sae"] for s in stats)
        y_sum, y_sumsq = sum(s["y_sum"] for s in stats), sum(s["y_sumsq"] for s in stats)
        total = y_sumsq - y_sum ** 2 / n
        return {"mae": sae / n, "rmse": float(np.sqrt(sse / n)), "r2": 1 - sse / total if total > 0 else float("nan"),
                "rows": int(n)}
    counts = {k: sum(s[k] for s in stats) for k in ("tp", "fp", "fn", "tn")}
    return {
        "auc": _auc(np.sum([s["hist_pos"] for s in stats], axis=0), np.sum([s["hist_neg"] for s in stats], axis=0)),
        "precision": counts["tp"] / (counts["tp"] + counts["fp"]) if counts["tp"] + counts["fp"] else 0.0,
        "recall": counts["tp"] / (counts["tp"] + counts["fn"]) if counts["tp"] + counts["fn"] else 0.0,
        "log_loss": sum(s["log_loss_sum"] for s in stats) / n,
        "rows": int(n),
    }
