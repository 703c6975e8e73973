"""Regression metrics and the objective dispatch, against scikit-learn's definitions computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from fedpipe.metrics import headline_metrics, model_metrics, objective_kind, regression_metrics


def test_regression_metrics_by_hand():
    y, p = np.array([10.0, 20.0, 30.0, 40.0]), np.array([12.0, 18.0, 33.0, 40.0])
    m = regression_metrics(y, p)
    assert m["mae"] == pytest.approx((2 + 2 + 3 + 0) / 4)
    assert m["rmse"] == pytest.approx(np.sqrt((4 + 4 + 9 + 0) / 4))
    assert m["r2"] == pytest.approx(1 - 17 / 500)
    assert m["rows"] == 4


def test_dispatch_follows_the_objective():
    y = np.array([0, 1, 1, 0])
    assert set(model_metrics("binary:logistic", y, np.array([0.1, 0.8, 0.6, 0.3]))) >= {"auc", "log_loss"}
    assert set(model_metrics("reg:squarederror", y, np.array([0.1, 0.8, 0.6, 0.3]))) >= {"mae", "r2"}
    assert objective_kind("reg:absoluteerror") == "regression"
    with pytest.raises(ValueError, match="multi:softprob"):
        objective_kind("multi:softprob")


def test_headline_metric_is_read_from_the_table():
    assert headline_metrics(["round", "auc", "log_loss"]) == ("log_loss", "auc")
    assert headline_metrics(["round", "mae", "r2"]) == ("mae", "r2")
    with pytest.raises(ValueError):
        headline_metrics(["round"])
