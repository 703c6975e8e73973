"""Model metrics a market computes on its own held-out rows; only these numbers leave the market."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import log_loss, precision_score, recall_score, roc_auc_score


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
