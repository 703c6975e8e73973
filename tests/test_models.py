"""fedpipe.models: one place tells a tree model from a linear one and scores rows with either."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from fedpipe import models
from fedpipe.strategies import fedavg


def _rows(n=200):
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    return x, (x["a"] - x["b"] > 0).astype(int).to_numpy()


def test_predict_trees_and_linear_alike():
    x, y = _rows()
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2}, xgb.DMatrix(x, label=y), 3)
    trees = __import__("json").loads(bytes(booster.save_raw("json")))
    assert models.model_family(trees) == "trees" and not models.is_linear(trees)
    np.testing.assert_allclose(models.predict(trees, x), booster.predict(xgb.DMatrix(x)), rtol=1e-6)

    linear = fedavg.initial_model(fedavg.pooled_scaler([fedavg.feature_stats(x.to_numpy())]), "classification",
                                  list(x.columns))
    linear = fedavg.average_weights(linear, [fedavg.local_update(linear, x.to_numpy(), y, epochs=5)])
    assert models.is_linear(linear)
    np.testing.assert_allclose(models.predict(linear, x), fedavg.predict(linear, x.to_numpy()))
    assert ((models.predict(linear, x) >= 0.5) == y).mean() > 0.9


def test_unknown_documents_and_wrong_columns_are_refused():
    with pytest.raises(ValueError, match="not a model document"):
        models.model_family({"weights": [1.0]})
    x, _ = _rows(10)
    linear = fedavg.initial_model({"n": 10, "mean": [0.0] * 3, "scale": [1.0] * 3}, "classification", ["a", "b", "c"])
    with pytest.raises(ValueError, match="built on columns"):
        models.predict(linear, x.rename(columns={"c": "d"}))
    x.iloc[0, 1] = np.nan
    with pytest.raises(ValueError, match=r"\['b'\].*missing"):
        models.predict(linear, x)
