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


def test_check_update_keeps_good_updates_and_says_why_it_refuses():
    model = fedavg.initial_model({"n": 1, "mean": [0.0, 0.0], "scale": [1.0, 1.0]}, "classification")
    assert fedavg.check_update(model, {"coef": [1, 2], "intercept": 0, "n_rows": 3}) == \
        {"coef": [1.0, 2.0], "intercept": 0.0, "n_rows": 3}
    for bad, why in (({"coef": [1.0], "intercept": 0.0, "n_rows": 3}, "coef holds 1"),
                     ({"coef": [1.0, float("inf")], "intercept": 0.0, "n_rows": 3}, "finite"),
                     ({"coef": [1.0, 2.0], "intercept": 0.0, "n_rows": -1}, "positive"),
                     ({"coef": [1.0, 2.0], "intercept": 0.0, "n_rows": True}, "positive"),
                     ({"coef": [1.0, 2.0], "n_rows": 3}, "exactly")):
        with pytest.raises(ValueError, match=why):
            fedavg.check_update(model, bad)


def test_summed_vectors_give_the_average_and_the_pooled_scaler():
    """What secure aggregation sums: weights_vector and stats_vector; divided out, the plain results."""
    markets = _markets()
    stats = [fedavg.feature_stats(x, y.astype(float)) for x, y in markets]
    total = fedavg.stats_from_vector(np.sum([fedavg.stats_vector(s) for s in stats], axis=0), with_target=True)
    pooled, summed_scaler = fedavg.pooled_scaler(stats), fedavg.pooled_scaler([total])
    for key in ("mean", "scale", "y_mean", "y_scale", "n"):
        np.testing.assert_allclose(summed_scaler[key], pooled[key], rtol=1e-12)
    with pytest.raises(ValueError, match="1 \\+ 2 x features"):
        fedavg.stats_from_vector(np.zeros(6), with_target=False)
    model = fedavg.initial_model(fedavg.pooled_scaler(stats), "classification")
    updates = [fedavg.local_update(model, x, y, epochs=3) for x, y in markets]
    summed = fedavg.from_weight_sum(model, np.sum([fedavg.weights_vector(u) for u in updates], axis=0))
    plain = fedavg.average_weights(model, updates)
    np.testing.assert_allclose(summed["coef"], plain["coef"], rtol=1e-12)
    assert summed["intercept"] == pytest.approx(plain["intercept"])
    with pytest.raises(ValueError, match="training rows"):
        fedavg.from_weight_sum(model, np.zeros(len(model["mean"]) + 2))
