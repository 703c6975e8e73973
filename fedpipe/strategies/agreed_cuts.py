"""Cut points the markets agree on before histogram training: exact quantiles of the federation's rows.

XGBoost bins every feature at ``max_bin`` cut points from an approximate quantile sketch. In the federated
collective each market sketches its own rows and the sketches are merged, so the cut points (and the model) differ
from a pooled model's, whose own sketch moves with the order of its rows. Instead, the markets find the exact
quantiles of all their rows together by bisection on summed counts: each step, every market counts its rows at or
below the current probe of each (feature, quantile) and only the sum over markets is used. The result depends on
the rows alone, not on their order or on how they are split between markets, so the federated model is the very
model one XGBoost would train on the pooled rows with the same cut points and ``base_score``
(tests/strategies/test_histogram.py; left to XGBoost, the federated and pooled estimates of ``base_score`` can
differ in the last bit).
With ``max_bin`` above the federation's row count every distinct value becomes a cut point: lossless, as XGBoost's
own sketch is when it has room for every value (federations/volve.toml sets it so).

``total`` is how a figure is summed (or its min / max taken) over the markets: the identity for one table (the
benchmark's pooled reference), ``collective_total`` inside XGBoost's federated collective. What crosses the border
is each market's counts at the probes, and min / max per feature, the same kind of figure as the gradient
histograms the collective already sums; no market sends its row values, where XGBoost's own sketch merge sends each
market's quantile summary (actual feature values). The result is row values, though: every market receives the agreed
cut points, and with ``max_bin`` above the row count those are every distinct value of every feature of every market.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import xgboost as xgb

Total = Callable[[np.ndarray, str], np.ndarray]  # (array, "sum" | "min" | "max") -> the same over every market

_NONE = np.iinfo(np.int64).max  # the min of a market with no value in a feature (and minus it, the max)


def local_total(values: np.ndarray, op: str) -> np.ndarray:
    """One table holds every row: nothing to combine."""
    return values


def collective_total(values: np.ndarray, op: str) -> np.ndarray:
    """Sum, min or max over every worker of XGBoost's collective (call inside its CommunicatorContext)."""
    ops = {"sum": xgb.collective.Op.SUM, "min": xgb.collective.Op.MIN, "max": xgb.collective.Op.MAX}
    return xgb.collective.allreduce(np.ascontiguousarray(values), ops[op]).reshape(values.shape)


def _keys(column: np.ndarray) -> np.ndarray:
    """float32 values as int64 keys in the same order (so bisection ends on an exact float32 value)."""
    bits = column.astype(np.float32).view(np.int32).astype(np.int64)
    return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


def _values(keys: np.ndarray) -> np.ndarray:
    bits = np.where(keys < 0, (-keys) | 0x80000000, keys).astype(np.uint32)
    return bits.view(np.float32)


def agreed_cuts(x: np.ndarray, max_bin: int, total: Total = local_total) -> list[np.ndarray]:
    """Per feature, the float32 cut points every market uses: the exact quantiles at ranks j/(max_bin - 1) of the rows
    of every market together (j = 1 .. max_bin - 2), without repeats, each the smallest value with more than that share
    of rows at or below it. Missing values (NaN) are left out, as XGBoost's sketch leaves them out.

    Every market calls this with its own ``x`` and the same ``max_bin``; ``total`` combines their counts. Returns
    the cut points plus the federation's min and max per feature as the first and last entries (XGBoost needs
    both to lay out its bins); an empty array for a feature no market has a value in.
    """
    if max_bin < 3:  # at 2 the only cut point would be the max: every row but the largest in one bin
        raise ValueError(f"max_bin must be at least 3 for agreed cut points, got {max_bin}")
    names = [str(c) for c in x.columns] if hasattr(x, "columns") else None  # to name a bad feature
    if hasattr(x, "to_numpy"):  # a DataFrame, pandas' nullable dtypes (pd.NA) included
        x = x.to_numpy(dtype=np.float32, na_value=np.nan)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"x must be a table (rows x features), got shape {x.shape}")
    features = x.shape[1]
    # XGBoost refuses +-inf; one market's inf would reach every market's cut points through the min / max, so
    # every market learns which features have one and stops with the same error (and takes the same collective steps)
    infinite = total(np.isinf(x).sum(axis=0).astype(np.int64), "sum")
    if infinite.any():
        where = "this market's rows" if np.isinf(x).any() else "another market's rows"
        bad = [names[f] if names else int(f) for f in np.flatnonzero(infinite)]
        raise ValueError(f"features {bad} hold +-inf or values beyond float32 ({where}); "
                         f"XGBoost cannot bin it: mark missing values as NaN")
    columns = [np.sort(_keys(col[~np.isnan(col)])) for col in x.T]
    counts = total(np.array([len(c) for c in columns], dtype=np.int64), "sum")
    lows = total(np.array([c[0] if len(c) else _NONE for c in columns], dtype=np.int64), "min")
    highs = total(np.array([c[-1] if len(c) else -_NONE for c in columns], dtype=np.int64), "max")

    # the max is a cut point too (the reference matrix holds it and XGBoost keeps every value of so few rows), so
    # max_bin - 2 quantiles fill the max_bin bins and one bin holds only the rows at the max: at the usual 256 bins
    # a small cost for cut points that are exactly reproducible
    quantiles = max_bin - 1
    steps = np.arange(1, quantiles, dtype=np.int64)
    need = steps[None, :] * counts[:, None] // quantiles + 1  # rows at or below the j-th cut point
    lo = np.repeat(lows[:, None], len(steps), axis=1)
    hi = np.repeat(np.maximum(highs, lows)[:, None], len(steps), axis=1)
    while (open_ := lo < hi).any():  # every market takes the same steps: the state depends only on summed counts
        mid = lo + (hi - lo) // 2
        below = np.stack([np.searchsorted(columns[f], mid[f], side="right") for f in range(features)])
        enough = total(below.astype(np.int64), "sum") >= need
        hi = np.where(open_ & enough, mid, hi)
        lo = np.where(open_ & ~enough, mid + 1, lo)  # a closed (lo == hi) pair never moves

    cuts = []
    for f in range(features):
        if counts[f] == 0:
            cuts.append(np.empty(0, dtype=np.float32))
            continue
        inner = np.unique(lo[f])
        inner = inner[(inner > lows[f]) & (inner < highs[f])]  # a cut at the min splits nothing
        ends = [lows[f], highs[f]] if highs[f] > lows[f] else [lows[f]]
        cuts.append(_values(np.concatenate([ends[:1], inner, ends[1:]]).astype(np.int64)))
    return cuts


def reference_matrix(cuts: list[np.ndarray], max_bin: int) -> xgb.QuantileDMatrix:
    """A tiny QuantileDMatrix whose own cut points are ``cuts``: pass it as ``ref`` so a market's rows are binned
    at the agreed points instead of its own sketch's. Its rows are each feature's min, cut points and max."""
    rows = max((len(c) for c in cuts), default=0) or 1
    table = np.full((rows, len(cuts)), np.nan, dtype=np.float32)
    for f, column in enumerate(cuts):
        table[:len(column), f] = column
    ref = xgb.QuantileDMatrix(table, max_bin=max_bin)
    indptr, values = ref.get_quantile_cut()
    for f, column in enumerate(cuts):  # XGBoost keeps every distinct value of so few rows; check it did
        got = values[indptr[f]:indptr[f + 1]]
        if len(column) and not np.array_equal(got[1:-1], column[1:]):  # [below min, cut points, max, above max]
            raise RuntimeError(f"feature {f}: XGBoost did not keep the agreed cut points "
                               f"({len(column) - 1} asked, {len(got) - 2} kept)")
    return ref


def binned_matrix(x: np.ndarray, label: np.ndarray, max_bin: int, total: Total = local_total,
                  **kwargs) -> xgb.QuantileDMatrix:
    """``x`` binned at the cut points agreed with the other markets (``total``), ready for hist training."""
    ref = reference_matrix(agreed_cuts(x, max_bin, total), max_bin)
    return xgb.QuantileDMatrix(x, label=label, ref=ref, max_bin=max_bin, **kwargs)
