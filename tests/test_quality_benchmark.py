"""benchmarks/quality.py: the validation folds, the choice rule and the target lines (no training here)."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import quality  # noqa: E402


def test_engines_are_dealt_whole_into_folds():
    train = pd.DataFrame({"unit": np.repeat(np.arange(1, 11), 5), "x": np.arange(50.0)})
    held = []
    for fold in range(3):
        fit, validation = quality.validation_split(train, 3, fold, seed=0)
        assert len(fit) + len(validation) == 50
        assert not set(fit["unit"]) & set(validation["unit"])  # no engine on both sides
        held += list(validation["unit"].unique())
    assert sorted(held) == list(range(1, 11))  # every engine validates exactly once


def test_a_wells_folds_look_forward_in_depth():
    train = pd.DataFrame({"depth_m": np.arange(90.0)})
    folds = [quality.validation_split(train, 3, fold, seed=0) for fold in range(3)]
    # each fold validates on the next depth block and fits only on the rows above it, as the held-out section
    # lies below the training rows
    assert [list(v["depth_m"]) for _, v in folds] == [list(np.arange(a, a + 22.0)) for a in (24, 46, 68)]
    assert [list(f["depth_m"]) for f, _ in folds] == [list(np.arange(float(a))) for a in (24, 46, 68)]


def test_a_well_too_short_for_its_folds_is_refused():
    with pytest.raises(ValueError, match="3 forward validation folds"):
        quality.validation_split(pd.DataFrame({"depth_m": [1.0, 2.0, 3.0]}), 3, 0, seed=0)


def test_one_engine_cannot_be_split():
    with pytest.raises(ValueError, match="nothing to fit"):
        quality.validation_split(pd.DataFrame({"unit": [1, 1, 1], "x": [0.0, 1.0, 2.0]}), 3, 0, seed=0)


def test_a_market_leaves_its_own_model_only_for_one_better_on_every_fold():
    folds = pd.DataFrame({"local_only": [0.90, 0.90, 0.90], "bagging": [0.99, 0.99, 0.80],  # best mean, loses once
                          "histogram": [0.91, 0.92, 0.91], "fedavg": [0.50, 0.50, 0.50]})
    assert quality.choose(folds, list(folds.columns), "auc", keep="local_only") == "histogram"
    assert quality.choose(folds, ["bagging", "histogram", "fedavg"], "auc") == "bagging"  # best mean
    assert quality.choose(folds.drop(columns="histogram"), ["local_only", "bagging", "fedavg"], "auc",
                          keep="local_only") == "local_only"
    rmse = pd.DataFrame({"local_only": [10.0, 11.0], "histogram": [9.0, 10.9]})
    assert quality.choose(rmse, ["local_only", "histogram"], "rmse", keep="local_only") == "histogram"


def test_pooled_range_spans_every_sketch_order_and_nothing_else():
    v = pd.DataFrame({"pooled": [0.5, 50.0], "pooled_sketch": [0.90, 13.0], "pooled_sketch_order_1": [0.92, 13.4],
                      "pooled_sketch_order_2": [0.91, 12.9], "histogram": [0.99, 1.0]}, index=["A", "B"])
    lo, hi = quality.pooled_range(v)
    assert list(lo) == [0.90, 12.9] and list(hi) == [0.92, 13.4]


def _table(label: str, metric: str, values: dict[str, dict[str, float]]) -> pd.DataFrame:
    rows = [(label, market, method, metric, value)
            for market, by_method in values.items() for method, value in by_method.items()]
    return pd.DataFrame(rows, columns=["usecase", "market", "method", "metric", "value"])


def test_targets_say_met_or_missed_with_the_figures():
    # A (data-poor): chosen beats local-only by 0.05, the sketch-binned pooled model's spread there is 0.01.
    # B: histogram 0.02 AUC under pooled (2 %), and the choices worse than local-only.
    values = {"A": {"pooled": 0.90, "pooled_sketch": 0.90, "pooled_sketch_order_1": 0.91, "histogram": 0.90,
                    "local_only": 0.80, "best_federated": 0.85, "chosen": 0.85},
              "B": {"pooled": 0.95, "pooled_sketch": 0.95, "pooled_sketch_order_1": 0.95, "histogram": 0.93,
                    "local_only": 0.94, "best_federated": 0.93, "chosen": 0.935}}
    lines = "\n".join(quality.targets(_table("pm", "auc", values), {"pm": "A"}))
    assert "histogram within 0.5 % of pooled (auc) on every market: MISSED — largest gap 2.11 % on B" in lines
    assert "that model moves up to 1.11 % on A (0.9000..0.9100) by row order alone" in lines
    assert "clearly better on the data-poor market A (gain above the sketch-binned pooled model's spread there, " \
           "0.0100, and its 95 % interval above zero): MET" in lines
    assert "at least as good as local-only (auc) on every market: MISSED on B 0.9350 vs 0.9400" in lines
    assert "no local-only fallback), at least as good as local-only: not on B 0.9300 vs 0.9400" in lines


def test_a_gain_within_pooled_noise_is_not_clearly_better():
    values = {"A": {"pooled": 10.0, "pooled_sketch": 10.0, "pooled_sketch_order_1": 10.5, "histogram": 10.0,
                    "local_only": 11.0, "best_federated": 10.8, "chosen": 10.8}}
    lines = "\n".join(quality.targets(_table("drill", "rmse", values), {"drill": "A"}))
    assert "spread there, 0.5000, and its 95 % interval above zero): MISSED" in lines
    assert "histogram within 0.5 % of pooled (rmse) on every market: MET — largest gap 0.00 %" in lines


def _gains(label: str, market: str, gain: float, lo: float, hi: float) -> pd.DataFrame:
    return pd.DataFrame([(label, market, "chosen", metric, value) for metric, value in
                         (("gain_vs_local_only", gain), ("gain_lo95", lo), ("gain_hi95", hi))],
                        columns=["usecase", "market", "method", "metric", "value"])


def test_a_gain_the_bootstrap_cannot_tell_from_zero_is_not_clearly_better():
    values = {"A": {"pooled": 0.90, "pooled_sketch": 0.90, "pooled_sketch_order_1": 0.90, "histogram": 0.90,
                    "local_only": 0.80, "best_federated": 0.85, "chosen": 0.85}}
    table = pd.concat([_table("pm", "auc", values), _gains("pm", "A", 0.05, -0.01, 0.11)])
    lines = "\n".join(quality.targets(table, {"pm": "A"}))
    assert "and its 95 % interval above zero): MISSED" in lines
    assert "(gain +0.05000, 95 % interval -0.01000..+0.11000)" in lines
    assert "95 % paired bootstrap interval over held-out engines or depth blocks: " \
           "A +0.05000 (-0.01000..+0.11000)" in lines


def test_gain_interval_resamples_whole_groups_and_brackets_the_gain():
    rng = np.random.default_rng(0)
    y = rng.normal(size=400)
    groups = np.repeat(np.arange(40), 10)
    better, worse = y + rng.normal(scale=0.5, size=400), y + rng.normal(scale=1.0, size=400)
    gain, lo, hi = quality.gain_interval("rmse", y, better, worse, groups, draws=300)
    assert 0 < lo < gain < hi  # clearly better: the interval excludes zero
    gain, lo, hi = quality.gain_interval("rmse", y, better, better.copy(), groups, draws=50)
    assert gain == lo == hi == 0.0  # the same predictions: no gain on any draw
    labels = (y > 0).astype(int)
    gain, lo, hi = quality.gain_interval("auc", labels, worse, better, groups, draws=300)
    assert lo < gain < hi < 0  # chosen worse than local-only: negative gain, interval below zero
