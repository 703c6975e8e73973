"""FedAvg of scikit-learn linear models on real C-MAPSS-shaped data: federated scaler, weighting, plain numbers."""

import json

import numpy as np
import pytest
from sklearn.linear_model import SGDClassifier
from sklearn.preprocessing import StandardScaler

from fedpipe.strategies import fedavg


def _markets():
    rng = np.random.default_rng(0)
    out = []
    for shift, n in ((0.0, 500), (1.0, 200), (-0.5, 50)):
        x = rng.normal(loc=shift, scale=1 + shift ** 2, size=(n, 6))
        x[:, 5] = 3.0  # a constant column
        out.append((x, (x[:, 0] - x[:, 1] + rng.normal(scale=0.5, size=n) > shift).astype(int)))
    return out


def test_pooled_scaler_equals_standard_scaler_on_all_rows():
    markets = _markets()
    scaler = fedavg.pooled_scaler([fedavg.feature_stats(x) for x, _ in markets])
    pooled = StandardScaler().fit(np.vstack([x for x, _ in markets]))
    np.testing.assert_allclose(scaler["mean"], pooled.mean_, rtol=1e-10)
    np.testing.assert_allclose(scaler["scale"], pooled.scale_, rtol=1e-8)
    assert scaler["n"] == 750


def test_average_is_row_weighted_and_model_is_plain_numbers():
    markets = _markets()
    model = fedavg.initial_model(fedavg.pooled_scaler([fedavg.feature_stats(x) for x, _ in markets]),
                                 "classification")
    updates = [fedavg.local_update(model, x, y, epochs=5) for x, y in markets]
    avg = fedavg.average_weights(model, updates)
    share = np.array([500, 200, 50]) / 750
    np.testing.assert_allclose(avg["coef"], share @ np.array([u["coef"] for u in updates]))
    assert avg["intercept"] == pytest.approx(share @ np.array([u["intercept"] for u in updates]))
    assert json.loads(json.dumps(avg)) == avg  # travels as JSON numbers, never a pickle


def test_predict_matches_sklearn_and_learns():
    x, y = _markets()[0]
    model = fedavg.initial_model(fedavg.pooled_scaler([fedavg.feature_stats(x)]), "classification")
    for _ in range(5):
        model = fedavg.average_weights(model, [fedavg.local_update(model, x, y, epochs=3)])
    clf = SGDClassifier(loss="log_loss")
    clf.coef_, clf.intercept_, clf.classes_ = np.array([model["coef"]]), np.array([model["intercept"]]), np.array([0, 1])
    xs = (x - np.array(model["mean"])) / np.array(model["scale"])
    np.testing.assert_allclose(fedavg.predict(model, x), clf.predict_proba(xs)[:, 1], rtol=1e-10)
    assert ((fedavg.predict(model, x) >= 0.5) == y).mean() > 0.85


def test_regression_predicts_in_target_units():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 3))
    y = 100 + 20 * x[:, 0]
    model = fedavg.initial_model(fedavg.pooled_scaler([fedavg.feature_stats(x, y)]), "regression")
    for _ in range(10):
        model = fedavg.average_weights(model, [fedavg.local_update(model, x, y, epochs=5)])
    assert np.sqrt(np.mean((fedavg.predict(model, x) - y) ** 2)) < 2.0


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="kind"):
        fedavg.initial_model({"mean": [0.0], "scale": [1.0]}, "ranking")
    model = fedavg.initial_model({"n": 1, "mean": [0.0, 0.0], "scale": [1.0, 1.0]}, "classification")
    with pytest.raises(ValueError, match="finite"):
        fedavg.average_weights(model, [{"coef": [float("nan"), 0.0], "intercept": 0.0, "n_rows": 3}])
    with pytest.raises(ValueError, match="single class"):
        fedavg.local_update(model, np.zeros((4, 2)), np.zeros(4))
