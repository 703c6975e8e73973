"""Tree aggregation on real XGBoost models: the aggregated margin is the row-weighted average of the steps."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from fedpipe.aggregation import TreeUpdate, aggregate_bagging, new_trees, to_booster, tree_count

PARAMS = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "base_score": 0.5, "seed": 0}


def _data(seed, n=400):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(scale=0.3, size=n) > 0).astype(int)
    return xgb.DMatrix(X, y)


def _margin(booster, dm):
    return booster.predict(dm, output_margin=True)


def _update(market, dm, k, start=None):
    base = None if start is None else to_booster(start)
    booster = xgb.train(PARAMS, dm, num_boost_round=k, xgb_model=base)
    return booster, TreeUpdate(market, new_trees(booster, 0 if start is None else tree_count(start)), dm.num_row())


def test_single_market_with_full_weight_reproduces_its_model():
    dm = _data(0)
    booster, update = _update("A", dm, 4)
    merged = to_booster(aggregate_bagging(None, [update]))
    np.testing.assert_allclose(_margin(merged, dm), _margin(booster, dm), rtol=1e-5, atol=1e-5)


def test_round_step_is_row_weighted_average_of_market_steps():
    a, b = _data(1, 300), _data(2, 100)
    _, ua = _update("A", a, 2)
    _, ub = _update("B", b, 2)
    round1 = aggregate_bagging(None, [ua, ub])
    assert tree_count(round1) == 4
    # Round 2 continues from the global model: each market's margin step, weighted 3:1, is the global step.
    booster_a, ua2 = _update("A", a, 3, start=round1)
    booster_b, ub2 = _update("B", b, 3, start=round1)
    round2 = aggregate_bagging(round1, [ub2, ua2])  # arrival order must not matter
    probe = _data(3, 50)
    base = _margin(to_booster(round1), probe)
    step_a = _margin(booster_a, probe) - base
    step_b = _margin(booster_b, probe) - base
    expected = base + 0.75 * step_a + 0.25 * step_b
    np.testing.assert_allclose(_margin(to_booster(round2), probe), expected, rtol=1e-4, atol=1e-4)
    assert tree_count(round2) == 10


def test_local_statistics_are_masked_before_leaving():
    _, update = _update("A", _data(4), 2)
    for tree in update.model["learner"]["gradient_booster"]["model"]["trees"]:
        assert set(tree["sum_hessian"]) == {0.0}
        assert set(tree["loss_changes"]) == {0.0}


def test_multiclass_iterations_keep_one_tree_per_class():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 3))
    y = np.digitize(X[:, 0], [-0.5, 0.5])
    dm = xgb.DMatrix(X, y)
    params = {"objective": "multi:softprob", "num_class": 3, "max_depth": 2, "base_score": 0.5}
    booster = xgb.train(params, dm, num_boost_round=2)
    update = TreeUpdate("A", new_trees(booster, 0), 300)
    merged = to_booster(aggregate_bagging(None, [update]))
    np.testing.assert_allclose(merged.predict(dm), booster.predict(dm), rtol=1e-5, atol=1e-6)


def test_update_with_other_features_is_refused():
    _, ua = _update("A", _data(6), 1)
    X = np.random.default_rng(7).normal(size=(50, 5))
    other = xgb.train(PARAMS, xgb.DMatrix(X, (X[:, 0] > 0).astype(int)), 1)
    ub = TreeUpdate("B", new_trees(other, 0), 50)
    with pytest.raises(ValueError, match="market 'B'.*num_feature"):
        aggregate_bagging(None, [ua, ub])


def test_nan_leaf_is_refused():
    _, ua = _update("A", _data(8), 1)
    ua.model["learner"]["gradient_booster"]["model"]["trees"][0]["split_conditions"][-1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        aggregate_bagging(None, [ua])


def _fd001():
    """Real C-MAPSS FD001 rows, labelled "fails within 30 cycles" (the predictive-maintenance use case's label)."""
    table = pd.read_parquet(Path(__file__).resolve().parents[1] / "usecases" / "predictive_maintenance" / "data"
                            / "FD001" / "train.parquet")
    rul = table.groupby("unit")["cycle"].transform("max") - table["cycle"]
    features = table.drop(columns=["unit", "cycle"])
    return xgb.DMatrix(features, label=(rul <= 30).astype(int), feature_names=list(features.columns))


def test_internal_base_weights_are_masked_and_predictions_stay_bit_identical():
    # An internal node's base weight is -G/(H+lambda) of the rows reaching it: the root's gives the label mean.
    dm = _fd001()
    booster = xgb.train({**PARAMS, "max_depth": 4}, dm, num_boost_round=5)
    plain = booster.save_raw("json")
    masked = new_trees(booster, 0)
    trees = masked["learner"]["gradient_booster"]["model"]["trees"]
    raw_trees = json.loads(plain)["learner"]["gradient_booster"]["model"]["trees"]
    assert any(w != 0 for t in raw_trees for w, left in zip(t["base_weights"], t["left_children"]) if left != -1)
    for tree, raw in zip(trees, raw_trees):
        internal = [i for i, left in enumerate(tree["left_children"]) if left != -1]
        assert internal and all(tree["base_weights"][i] == 0.0 for i in internal)
        leaves = [i for i, left in enumerate(tree["left_children"]) if left == -1]
        assert [tree["base_weights"][i] for i in leaves] == [raw["base_weights"][i] for i in leaves]
        assert tree["split_conditions"] == raw["split_conditions"]
    reloaded = to_booster(masked)  # XGBoost loads the masked JSON document
    for kind in ({}, {"output_margin": True}, {"pred_leaf": True}):
        assert np.array_equal(reloaded.predict(dm, **kind), booster.predict(dm, **kind)), kind
    merged = to_booster(aggregate_bagging(None, [TreeUpdate("A", masked, dm.num_row())]))
    assert np.array_equal(merged.predict(dm), booster.predict(dm))  # weight 1: the global model predicts the same


def test_multi_target_trees_mask_whole_internal_vectors():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(300, 3))
    dm = xgb.DMatrix(X, np.c_[X[:, 0] + X[:, 2], X[:, 1]])
    booster = xgb.train({"tree_method": "hist", "multi_strategy": "multi_output_tree", "max_depth": 3,
                         "base_score": 0.0}, dm, num_boost_round=2)
    masked = new_trees(booster, 0)
    for tree in masked["learner"]["gradient_booster"]["model"]["trees"]:
        width = len(tree["base_weights"]) // len(tree["left_children"])
        assert width == 2
        for node, left in enumerate(tree["left_children"]):
            if left != -1:
                assert tree["base_weights"][node * width:(node + 1) * width] == [0.0, 0.0]
    assert np.array_equal(to_booster(masked).predict(dm), booster.predict(dm))


def test_update_grown_on_another_base_score_is_refused():
    # Without an agreed base_score XGBoost fits B's intercept to B's labels: its trees are steps from there.
    _, ua = _update("A", _data(10), 1)
    own = {k: v for k, v in PARAMS.items() if k != "base_score"}
    X = np.random.default_rng(11).normal(size=(200, 4))
    dm = xgb.DMatrix(X, (X[:, 0] > -1).astype(int))  # B's label mean is far from 0.5
    ub = TreeUpdate("B", new_trees(xgb.train(own, dm, 1), 0), dm.num_row())
    with pytest.raises(ValueError, match=r"market 'B': update has base_score 0\.8\d*, global model has 0\.5\b"):
        aggregate_bagging(None, [ua, ub])


def test_base_score_is_compared_as_a_number():
    _, ua = _update("A", _data(12), 1)
    _, ub = _update("B", _data(13), 1)
    ub.model["learner"]["learner_model_param"]["base_score"] = "5.0000001E-1"  # older XGBoost's unbracketed form
    assert tree_count(aggregate_bagging(None, [ua, ub])) == 2
    ub.model["learner"]["learner_model_param"]["base_score"] = "[5.01E-1]"
    with pytest.raises(ValueError, match="market 'B': update has base_score 0.501, global model has 0.5"):
        aggregate_bagging(None, [ua, ub])
