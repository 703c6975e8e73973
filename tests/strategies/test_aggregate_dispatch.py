"""fedpipe.strategies.aggregate: bagging scales and appends per market, histogram appends the shared trees once."""

import copy

import numpy as np
import pytest
import xgboost as xgb

from fedpipe.aggregation import TreeUpdate, new_trees, to_booster, tree_count
from fedpipe.strategies import aggregate


@pytest.fixture(scope="module")
def update():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2, "base_score": 0.5},
                        xgb.DMatrix(x, label=(x[:, 0] > 0).astype(int)), 3)
    return new_trees(booster, 0), xgb.DMatrix(x)


def test_histogram_appends_the_shared_trees_once(update):
    doc, dtest = update
    updates = [TreeUpdate(m, copy.deepcopy(doc), n) for m, n in (("A", 100), ("B", 50))]
    glob = aggregate("histogram", None, updates)
    assert tree_count(glob) == 3
    np.testing.assert_allclose(to_booster(glob).predict(dtest), to_booster(doc).predict(dtest), rtol=1e-6)
    assert tree_count(aggregate("bagging", None, updates)) == 6


def test_histogram_refuses_markets_with_different_trees(update):
    doc, _ = update
    other = copy.deepcopy(doc)
    other["learner"]["gradient_booster"]["model"]["trees"][0]["split_conditions"][0] += 1.0
    with pytest.raises(ValueError, match="market 'B': histogram trees differ"):
        aggregate("histogram", None, [TreeUpdate("A", doc, 10), TreeUpdate("B", other, 10)])
    with pytest.raises(ValueError, match="no tree aggregation"):
        aggregate("fedavg", None, [TreeUpdate("A", doc, 10)])
