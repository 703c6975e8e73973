"""Cyclic aggregation on real XGBoost: appending each market's trees equals boosting through the markets in turn."""

import numpy as np
import pytest
import xgboost as xgb

from fedpipe.aggregation import TreeUpdate, new_trees, to_booster
from fedpipe.strategies import aggregate
from fedpipe.strategies.cyclic import append_round, append_trees, visit_kind, visiting_order


def _market(seed, n=300):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    return xgb.DMatrix(x, label=(x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=0.3, size=n) > 0).astype(int))


@pytest.mark.parametrize("objective,extra", [("binary:logistic", {}), ("multi:softprob", {"num_class": 3})])
def test_appended_trees_equal_sequential_boosting(objective, extra):
    params = {"objective": objective, "max_depth": 3, "eta": 0.3, "base_score": 0.5, "seed": 0, **extra}
    markets = [_market(s) for s in (1, 2, 3)]
    if extra:
        for d in markets:
            d.set_label(np.asarray(d.get_label() + (np.arange(d.num_row()) % 2), dtype=float))
    doc, reference = None, None
    for i, dtrain in enumerate(markets):
        start = to_booster(doc) if doc else None
        booster = xgb.train(params, dtrain, num_boost_round=2, xgb_model=start)
        doc = append_trees(doc, TreeUpdate(f"m{i}", new_trees(booster, 2 * i), dtrain.num_row()))
        reference = xgb.train(params, dtrain, num_boost_round=2, xgb_model=reference)
    glob = to_booster(doc)
    assert glob.num_boosted_rounds() == 6
    test = _market(9)
    np.testing.assert_allclose(glob.predict(test), reference.predict(test), rtol=1e-6)
    trees = doc["learner"]["gradient_booster"]["model"]["trees"]
    assert all(set(t["sum_hessian"]) == {0.0} for t in trees)  # local statistics stay masked


def test_visiting_order_is_by_name():
    assert visiting_order(["FD003", "FD001", "FD002"]) == ["FD001", "FD002", "FD003"]


def _updates():
    """Three markets' trees, each boosted from the model the previous market left (as the visits build them)."""
    params = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "base_score": 0.5, "seed": 0}
    doc, updates = None, []
    for i, name in enumerate(["A", "B", "C"]):
        dtrain = _market(i + 1)
        booster = xgb.train(params, dtrain, num_boost_round=2, xgb_model=to_booster(doc) if doc else None)
        update = TreeUpdate(name, new_trees(booster, 2 * i), dtrain.num_row())
        doc = append_trees(doc, update)
        updates.append(update)
    return doc, updates


def test_append_round_rebuilds_the_last_visit_model_whatever_order_updates_arrive_in():
    last_visit, updates = _updates()
    assert append_round(None, list(reversed(updates))) == last_visit  # the centre's dict order does not matter
    assert aggregate("cyclic", None, updates) == last_visit  # what the round flow's aggregate step calls


def test_append_round_needs_an_update():
    with pytest.raises(ValueError, match="no updates"):
        append_round(None, [])


def test_visit_kinds_never_collide_with_each_other_or_a_global_model():
    kinds = {visit_kind(v) for v in range(1, 40)}
    assert len(kinds) == 39 and "global-model" not in kinds
