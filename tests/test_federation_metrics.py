"""Federation metrics from summed sufficient statistics agree with metrics on the pooled rows."""

import numpy as np
import pytest
from sklearn.metrics import log_loss, mean_absolute_error, r2_score, roc_auc_score

from fedpipe.federation_metrics import federation_metrics, sufficient_stats


def test_classification_matches_pooled_rows_and_is_not_an_average():
    rng = np.random.default_rng(0)
    parts = []
    for n, noise in ((2000, 0.5), (300, 2.0)):
        y = rng.integers(0, 2, n)
        parts.append((y, 1 / (1 + np.exp(-(2 * y - 1 + rng.normal(scale=noise, size=n))))))
    fed = federation_metrics([sufficient_stats("classification", y, s) for y, s in parts])
    y, s = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    assert fed["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-3)  # 1000 bins: ties only within a bin
    assert fed["log_loss"] == pytest.approx(log_loss(y, s), rel=1e-9)
    assert fed["rows"] == 2300
    mean_of_markets = np.mean([roc_auc_score(*p) for p in parts])
    assert abs(fed["auc"] - mean_of_markets) > 0.01  # the data-poor, noisy market weighs by its rows


def test_regression_matches_pooled_rows():
    rng = np.random.default_rng(1)
    parts = [(rng.normal(50, 10, n), rng.normal(50, 10, n)) for n in (100, 700)]
    fed = federation_metrics([sufficient_stats("regression", y, p) for y, p in parts])
    y, p = np.concatenate([a for a, _ in parts]), np.concatenate([b for _, b in parts])
    assert fed["rmse"] == pytest.approx(np.sqrt(np.mean((y - p) ** 2)))
    assert fed["mae"] == pytest.approx(mean_absolute_error(y, p))
    assert fed["r2"] == pytest.approx(r2_score(y, p))


def test_mixed_kinds_are_refused():
    with pytest.raises(ValueError, match="different kinds"):
        federation_metrics([sufficient_stats("regression", [1.0], [1.0]),
                            sufficient_stats("classification", [1], [0.9])])
