"""Model metrics a market computes on its own held-out rows; only these numbers leave the market."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (log_loss, mean_absolute_error, precision_score, r2_score, recall_score,
                             roc_auc_score, root_mean_squared_error)


def classification_metrics(y_true: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """AUC, precision, recall and log loss of probability ``scores`` against 0/1 labels."""
    y_true = np.asarray(y_true).astype(int)
    scores = np.clip(np.asarray(scores, dtype=float), 1e-7, 1 - 1e-7)
    predicted = (scores >= threshold).astype(int)
    both_classes = len(np.unique(y_true)) == 2
    return {
        "auc": float(roc_auc_score(y_true, scores)) if both_classes else float("nan"),
        "precision": float(precision_score(y_true, predicted, zero_division=0)),
        "recall": float(recall_score(y_true, predicted, zero_division=0)),
        "log_loss": float(log_loss(y_true, scores, labels=[0, 1])),
        "rows": int(len(y_true)),
    }


def regression_metrics(y_true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Mean absolute error, root mean squared error and R² of ``predicted`` against ``y_true``."""
    y_true, predicted = np.asarray(y_true, dtype=float), np.asarray(predicted, dtype=float)
    return {
        "mae": float(mean_absolute_error(y_true, predicted)),
        "rmse": float(root_mean_squared_error(y_true, predicted)),
        "r2": float(r2_score(y_true, predicted)) if len(y_true) > 1 else float("nan"),
        "rows": int(len(y_true)),
    }


# Per kind of objective: the headline metric (first, lower is better) and the other one shown next to it.
HEADLINE = {"classification": ("log_loss", "auc"), "regression": ("mae", "r2")}


def headline_metrics(columns) -> tuple[str, str]:
    """(loss, other) of a metrics table, from the columns it has: ("log_loss", "auc") or ("mae", "r2")."""
    for loss, other in HEADLINE.values():
        if loss in columns:
            return loss, other
    raise ValueError(f"metrics table has none of the headline metrics {[h[0] for h in HEADLINE.values()]}")


def objective_kind(objective: str) -> str:
    """``"regression"`` for XGBoost's ``reg:*`` objectives, ``"classification"`` for ``binary:*``."""
    if objective.startswith("reg:"):
        return "regression"
    if objective.startswith("binary:"):
        return "classification"
    raise ValueError(f"no metrics for XGBoost objective '{objective}' (expected reg:* or binary:*)")


def model_metrics(objective: str, y_true: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """The metrics that fit the use case's objective: classification or regression."""
    if objective_kind(objective) == "regression":
        return regression_metrics(y_true, scores)
    return classification_metrics(y_true, scores, threshold)
