"""What a global model document is, and how to score rows with one: the one place that knows both families.

A global model travels as JSON: XGBoost's own model document (tree strategies: bagging, cyclic, histogram) or
fedavg's plain numbers (:mod:`fedpipe.strategies.fedavg`, ``"family": "linear"``). Code that scores a model
(market evaluation, the registry's gate, hold-out screening) asks :func:`predict` and never looks inside.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

LINEAR, TREES = "linear", "trees"


def model_family(doc: dict) -> str:
    """``"linear"`` for a fedavg model, ``"trees"`` for an XGBoost model document; ValueError otherwise."""
    if isinstance(doc, dict) and doc.get("family") == LINEAR:
        return LINEAR
    if isinstance(doc, dict) and "learner" in doc:
        return TREES
    keys = sorted(doc)[:6] if isinstance(doc, dict) else type(doc).__name__
    raise ValueError(f"not a model document this federation knows (neither XGBoost trees nor a fedavg linear "
                     f"model; it has {keys})")


def is_linear(doc: dict | None) -> bool:
    return doc is not None and model_family(doc) == LINEAR


def predict(doc: dict, features: pd.DataFrame, iteration_range: tuple[int, int] | None = None) -> np.ndarray:
    """Scores of ``doc`` for the rows of ``features`` (the use case's model inputs): probabilities or values.

    ``iteration_range`` limits a tree model to its first boosting steps (ignored for a linear model).
    """
    if model_family(doc) == LINEAR:
        from fedpipe.strategies.fedavg import predict as linear_predict

        return linear_predict(doc, linear_inputs(doc, features))
    import xgboost as xgb

    from fedpipe.aggregation import to_booster

    matrix = xgb.DMatrix(features, feature_names=list(features.columns))
    return to_booster(doc).predict(matrix, iteration_range=iteration_range or (0, 0))


def linear_inputs(doc: dict, features: pd.DataFrame) -> np.ndarray:
    """The feature matrix a linear model expects: the columns it was built on, complete, as float64."""
    names = doc.get("features")
    if names is not None and list(features.columns) != list(names):
        raise ValueError(f"the linear model was built on columns {list(names)}, these rows have "
                         f"{list(features.columns)}")
    x = features.to_numpy(dtype="float64")
    if x.shape[1] != len(doc["mean"]):
        raise ValueError(f"the linear model expects {len(doc['mean'])} features, these rows have {x.shape[1]}")
    missing = ~np.isfinite(x).all(axis=0)
    if missing.any():
        raise ValueError(f"fedavg needs complete numeric features; column(s) "
                         f"{[c for c, bad in zip(features.columns, missing) if bad]} hold missing or infinite values")
    return x
