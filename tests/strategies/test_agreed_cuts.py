"""Agreed cut points: exact quantiles of every market's rows, from summed counts only."""

import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from fedpipe.strategies.agreed_cuts import agreed_cuts, binned_matrix, local_total, reference_matrix

sys.path.insert(0, str(Path(__file__).parent))
from hist_workers import shard  # noqa: E402


class Markets:
    """``total`` for markets in threads: each call waits for every market's figure and returns the combination,
    as XGBoost's collective allreduce does between processes."""

    def __init__(self, n: int):
        self.barrier, self.lock, self.parts, self.n = threading.Barrier(n), threading.Lock(), [], n
        self.calls = 0

    def total(self, values, op):
        with self.lock:
            self.parts.append(values.copy())
        self.barrier.wait()
        combined = {"sum": np.sum, "min": np.min, "max": np.max}[op](np.stack(self.parts), axis=0)
        if self.barrier.wait() == 0:
            self.parts.clear()
            self.calls += 1
        self.barrier.wait()
        return combined

    def cuts(self, shards, max_bin):
        with ThreadPoolExecutor(self.n) as pool:
            return list(pool.map(lambda x: agreed_cuts(x, max_bin, self.total), shards))


def _same(a, b):
    assert len(a) == len(b) and all(np.array_equal(p, q) for p, q in zip(a, b))


def test_cut_points_are_exact_quantiles_of_the_rows():
    x = np.arange(1000, dtype=np.float32)[:, None]
    (cuts,) = agreed_cuts(x, max_bin=11)
    # min, the quantiles at ranks j/10 (j = 1..9, each the smallest value with that share at or below), max
    assert cuts.tolist() == [0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 999]


def test_markets_agree_on_the_pooled_rows_cut_points_whatever_the_split_and_order():
    x = np.vstack([shard(r, 3)[0] for r in range(3)])
    pooled = agreed_cuts(x, max_bin=16)
    rng = np.random.default_rng(1)
    for sizes in ([80, 80, 80], [10, 200, 30]):
        rows = rng.permutation(len(x))
        shards = np.split(x[rows], np.cumsum(sizes)[:-1])
        markets = Markets(3)
        for theirs in markets.cuts(shards, max_bin=16):
            _same(theirs, pooled)
        assert markets.calls < 40  # min, max, counts, then one sum per bisection step (float32: 32 at most)


def test_more_bins_than_rows_keeps_every_distinct_value_like_xgboosts_own_sketch():
    rng = np.random.default_rng(0)
    x = rng.choice(rng.normal(size=300).astype(np.float32), size=(2000, 2))  # ~300 distinct values, repeated
    cuts = agreed_cuts(x, max_bin=4096)
    for f, column in enumerate(cuts):
        assert column.tolist() == np.unique(x[:, f]).tolist()  # lossless: min, every value between, max
    indptr, values = xgb.QuantileDMatrix(x, max_bin=4096).get_quantile_cut()
    for f, column in enumerate(cuts):  # the same points XGBoost's sketch keeps at this size
        assert np.array_equal(values[indptr[f] + 1:indptr[f + 1] - 1], column[1:])


def test_missing_values_constant_and_empty_features():
    x = np.array([[np.nan, 2.0, np.nan], [1.0, 2.0, np.nan], [-0.0, 2.0, np.nan], [-3.5, 2.0, np.nan]], np.float32)
    low, constant, empty = agreed_cuts(x, max_bin=8)
    assert low.tolist() == [-3.5, 0.0, 1.0] and constant.tolist() == [2.0] and empty.size == 0
    markets = Markets(2)  # a market with no value in a feature does not bend the min or max
    split = markets.cuts([x[:1], x[1:]], max_bin=8)
    for theirs in split:
        _same(theirs, [low, constant, empty])
    y = np.array([0, 1, 0, 1])
    model = xgb.train({"objective": "binary:logistic", "max_bin": 8, "tree_method": "hist"}, binned_matrix(x, y, 8), 2)
    assert np.isfinite(model.predict(xgb.DMatrix(x))).all()


def test_a_model_on_agreed_cuts_does_not_depend_on_row_order():
    x, y = shard(0, 1)
    params = {"objective": "binary:logistic", "max_depth": 3, "max_bin": 8, "nthread": 1, "tree_method": "hist"}
    rows = np.random.default_rng(0).permutation(len(y))
    first = xgb.train(params, binned_matrix(x, y, 8), 5)
    second = xgb.train(params, binned_matrix(x[rows], y[rows], 8), 5)
    np.testing.assert_array_equal(first.predict(xgb.DMatrix(x)), second.predict(xgb.DMatrix(x)))


def test_xgboost_bins_at_exactly_the_agreed_points():
    cuts = agreed_cuts(shard(0, 1)[0], max_bin=16)
    indptr, values = reference_matrix(cuts, 16).get_quantile_cut()
    for f, column in enumerate(cuts):  # below the min, every cut point and the max, above the max
        assert np.array_equal(values[indptr[f] + 1:indptr[f + 1] - 1], column[1:])


def test_too_few_bins_is_refused():
    for max_bin in (1, 2):
        with pytest.raises(ValueError, match="max_bin"):
            agreed_cuts(np.zeros((3, 1)), max_bin=max_bin, total=local_total)


def test_one_markets_inf_stops_every_market_with_the_same_clear_error():
    x = np.array([[1.0, 2.0], [np.inf, 3.0]], np.float32)
    markets = Markets(2)
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(agreed_cuts, part, 8, markets.total) for part in (x[:1], x[1:])]
        errors = [str(f.exception()) for f in futures]
    assert "features [0] hold +-inf or values beyond float32 (another market's rows)" in errors[0]
    assert "features [0] hold +-inf or values beyond float32 (this market's rows)" in errors[1]


def test_pandas_nullable_values_are_missing():
    import pandas as pd
    table = pd.DataFrame({"a": pd.array([1, None, 3], dtype="Int64"), "b": [1.0, 2.0, 3.0]})
    a, b = agreed_cuts(table, max_bin=8)
    assert a.tolist() == [1.0, 3.0] and b.tolist() == [1.0, 2.0, 3.0]


def test_an_infinite_feature_is_named():
    import pandas as pd
    table = pd.DataFrame({"rpm": [1.0, 2.0], "torque": [np.inf, 3.0]})
    with pytest.raises(ValueError, match=r"features \['torque'\] hold \+-inf .*\(this market's rows\)"):
        agreed_cuts(table, max_bin=8)
