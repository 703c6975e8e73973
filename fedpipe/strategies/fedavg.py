"""Federated averaging of a scikit-learn linear model (the card's "weight aggregation", and a linear baseline).

1. Each market sends sufficient statistics of its features (row count, sums, sums of squares; for regression also
   of the target), sealed. The centre adds them up into the federation's mean and standard deviation
   (:func:`pooled_scaler`): no market's rows are ever pooled.
2. Each round each market starts from the global weights, runs a few epochs of SGD on its standardised rows
   (``SGDClassifier(loss="log_loss")`` or ``SGDRegressor``) and sends back its weights and row count.
3. The centre averages the weights by row count (:func:`average_weights`).

The model travels as plain numbers (a JSON-able dict), never as a pickle: see :func:`predict`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import SGDClassifier, SGDRegressor


def feature_stats(features: np.ndarray, target: np.ndarray | None = None) -> dict[str, Any]:
    """A market's sufficient statistics for standardisation: counts, sums and sums of squares per column."""
    x = np.asarray(features, dtype="float64")
    stats = {"n": int(len(x)), "sum": x.sum(axis=0).tolist(), "sumsq": np.square(x).sum(axis=0).tolist()}
    if target is not None:
        y = np.asarray(target, dtype="float64")
        stats.update(y_sum=float(y.sum()), y_sumsq=float(np.square(y).sum()))
    return stats


def pooled_scaler(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """The federation's mean and standard deviation from the markets' sums (constant columns get scale 1)."""
    if not stats:
        raise ValueError("no feature statistics to pool")
    n = sum(s["n"] for s in stats)
    if n <= 0:
        raise ValueError("feature statistics report no rows")
    mean = np.sum([s["sum"] for s in stats], axis=0) / n
    var = np.maximum(np.sum([s["sumsq"] for s in stats], axis=0) / n - mean ** 2, 0.0)
    scale = np.sqrt(var)
    scale[scale < 1e-12] = 1.0
    scaler = {"n": int(n), "mean": mean.tolist(), "scale": scale.tolist()}
    if all("y_sum" in s for s in stats):
        y_mean = sum(s["y_sum"] for s in stats) / n
        y_var = max(sum(s["y_sumsq"] for s in stats) / n - y_mean ** 2, 0.0)
        scaler.update(y_mean=y_mean, y_scale=float(np.sqrt(y_var)) or 1.0)
    return scaler


def _standardise(model: dict, features: np.ndarray) -> np.ndarray:
    return (np.asarray(features, dtype="float64") - np.asarray(model["mean"])) / np.asarray(model["scale"])


def initial_model(scaler: dict, kind: str, features: list[str] | None = None) -> dict[str, Any]:
    """Zero weights on the pooled scaler; ``kind`` is "classification" or "regression".

    ``family`` marks the document as a linear model (fedpipe.models); ``features`` names its input columns.
    """
    if kind not in ("classification", "regression"):
        raise ValueError(f"fedavg: kind must be 'classification' or 'regression', got {kind!r}")
    named = {"features": list(features)} if features is not None else {}
    return {"family": "linear", "kind": kind, **named, **scaler, "coef": [0.0] * len(scaler["mean"]),
            "intercept": 0.0}


def local_update(model: dict, features: np.ndarray, target: np.ndarray, *, epochs: int = 3, alpha: float = 1e-4,
                 seed: int = 0) -> dict[str, Any]:
    """A few epochs of SGD from the global weights on one market's rows: {"coef", "intercept", "n_rows"}."""
    x = _standardise(model, features)
    y = np.asarray(target, dtype="float64")
    common = dict(alpha=alpha, max_iter=epochs, tol=None, random_state=seed)
    if model["kind"] == "classification":
        estimator = SGDClassifier(loss="log_loss", learning_rate="adaptive", eta0=0.01, **common)
        y = y.astype(int)
        if len(np.unique(y)) < 2:
            raise ValueError("fedavg: a market's training rows hold a single class")
    else:
        estimator = SGDRegressor(learning_rate="adaptive", eta0=0.01, **common)
        y = (y - model["y_mean"]) / model["y_scale"]
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a few epochs per round is the point
        estimator.fit(x, y, coef_init=np.asarray(model["coef"]), intercept_init=np.asarray([model["intercept"]]))
    return {"coef": estimator.coef_.ravel().tolist(), "intercept": float(np.ravel(estimator.intercept_)[0]),
            "n_rows": int(len(x))}


def average_weights(model: dict, updates: list[dict]) -> dict[str, Any]:
    """The global model with weights averaged over the markets' updates, weighted by their row counts."""
    if not updates:
        raise ValueError("no updates to average")
    rows = np.array([u["n_rows"] for u in updates], dtype="float64")
    if (rows <= 0).any():
        raise ValueError("an update reports no training rows")
    coefs = np.array([u["coef"] for u in updates], dtype="float64")
    if coefs.shape[1] != len(model["mean"]) or not np.isfinite(coefs).all():
        raise ValueError(f"updates must hold {len(model['mean'])} finite weights")
    share = rows / rows.sum()
    intercept = float(share @ np.array([u["intercept"] for u in updates], dtype="float64"))
    return {**model, "coef": (share @ coefs).tolist(), "intercept": intercept}


def check_update(model: dict, update: dict) -> dict[str, Any]:
    """One market's update as {"coef", "intercept", "n_rows"} if it fits ``model``; ValueError saying why not."""
    if not isinstance(update, dict) or set(update) != {"coef", "intercept", "n_rows"}:
        raise ValueError("a fedavg update holds exactly coef, intercept and n_rows, got "
                         f"{sorted(update) if isinstance(update, dict) else type(update).__name__}")
    coef = np.asarray(update["coef"], dtype="float64")
    intercept = float(update["intercept"])
    if isinstance(update["n_rows"], bool) or not isinstance(update["n_rows"], int) or update["n_rows"] <= 0:
        raise ValueError(f"n_rows must be a positive whole number, got {update['n_rows']!r}")
    if coef.shape != (len(model["mean"]),):
        raise ValueError(f"coef holds {coef.size} weights, the model has {len(model['mean'])} features")
    if not (np.isfinite(coef).all() and np.isfinite(intercept)):
        raise ValueError("weights must be finite numbers")
    return {"coef": coef.tolist(), "intercept": intercept, "n_rows": int(update["n_rows"])}


# --- flat vectors for secure aggregation: a sum of them is all the centre needs --------------------


def weights_vector(update: dict) -> np.ndarray:
    """[n*coef..., n*intercept, n]: summed over markets and divided by the last entry, the row-weighted average."""
    n = float(update["n_rows"])
    return np.concatenate([n * np.asarray(update["coef"], dtype="float64"), [n * float(update["intercept"]), n]])


def from_weight_sum(model: dict, total: np.ndarray) -> dict[str, Any]:
    """The global model from the markets' summed :func:`weights_vector` (what :func:`average_weights` gives)."""
    total = np.asarray(total, dtype="float64")
    if total.shape != (len(model["mean"]) + 2,):
        raise ValueError(f"summed weights hold {total.size} values, the model needs {len(model['mean']) + 2}")
    n = total[-1]
    if not np.isfinite(total).all() or n < 0.5:
        raise ValueError(f"summed weights report {n:g} training rows (or non-finite values)")
    return {**model, "coef": (total[:-2] / n).tolist(), "intercept": float(total[-2] / n)}


def stats_vector(stats: dict) -> np.ndarray:
    """[n, sum..., sumsq..., (y_sum, y_sumsq)]: the feature statistics as one vector to sum."""
    target = [stats["y_sum"], stats["y_sumsq"]] if "y_sum" in stats else []
    return np.concatenate([[float(stats["n"])], stats["sum"], stats["sumsq"], target]).astype("float64")


def stats_from_vector(total: np.ndarray, with_target: bool) -> dict[str, Any]:
    """Inverse of :func:`stats_vector` (for a sum of them); ``with_target``: it ends with the target's sums."""
    total = np.asarray(total, dtype="float64")
    d, extra = divmod(total.size - 1 - (2 if with_target else 0), 2)
    if extra or d < 1:
        raise ValueError(f"summed statistics hold {total.size} values: not 1 + 2 x features"
                         + (" + 2 target sums" if with_target else ""))
    stats = {"n": int(round(total[0])), "sum": total[1:1 + d].tolist(), "sumsq": total[1 + d:1 + 2 * d].tolist()}
    if with_target:
        stats.update(y_sum=float(total[-2]), y_sumsq=float(total[-1]))
    return stats


def predict(model: dict, features: np.ndarray) -> np.ndarray:
    """Probabilities (classification) or predictions in the target's units (regression), from numbers alone."""
    z = _standardise(model, features) @ np.asarray(model["coef"]) + model["intercept"]
    if model["kind"] == "classification":
        return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))
    return z * model["y_scale"] + model["y_mean"]
