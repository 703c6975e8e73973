"""Bagging (fedpipe.aggregation) for k > 1 and multi-class: the round's step is the row-weighted mean step."""

import numpy as np
import xgboost as xgb

from fedpipe.aggregation import TreeUpdate, aggregate_bagging, new_trees, to_booster


def test_k_trees_multiclass_is_row_weighted_average_of_margins():
    rng = np.random.default_rng(0)
    params = {"objective": "multi:softprob", "num_class": 3, "max_depth": 3, "base_score": 0.5, "seed": 0}
    data = []
    for n in (400, 100):
        x = rng.normal(size=(n, 5))
        data.append(xgb.DMatrix(x, label=np.digitize(x[:, 0] + x[:, 1], [-0.5, 0.5])))
    base = xgb.train(params, data[0], num_boost_round=2)
    base_doc = new_trees(base, 0)
    updates, boosters = [], []
    for i, d in enumerate(data):
        b = xgb.train(params, d, num_boost_round=3, xgb_model=to_booster(base_doc))
        boosters.append(b)
        updates.append(TreeUpdate(f"m{i}", new_trees(b, 2), d.num_row()))
    glob = to_booster(aggregate_bagging(base_doc, updates))
    assert glob.num_boosted_rounds() == 2 + 3 + 3
    test = xgb.DMatrix(rng.normal(size=(50, 5)))
    start = to_booster(base_doc).predict(test, output_margin=True)
    steps = [b.predict(test, output_margin=True) - start for b in boosters]
    expected = start + 0.8 * steps[0] + 0.2 * steps[1]
    np.testing.assert_allclose(glob.predict(test, output_margin=True), expected, rtol=1e-5, atol=1e-5)
    for u in updates:
        trees = u.model["learner"]["gradient_booster"]["model"]["trees"]
        assert len(trees) == 9 and all(set(t["sum_hessian"]) | set(t["loss_changes"]) == {0.0} for t in trees)
