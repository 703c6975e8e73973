"""benchmarks/quality.py: the validation split that picks best_federated (no training here)."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import quality  # noqa: E402


def test_engines_are_split_whole():
    train = pd.DataFrame({"unit": np.repeat(np.arange(1, 11), 5), "x": np.arange(50.0)})
    fit, validation = quality.validation_split(train, 0.2, seed=0)
    assert validation["unit"].nunique() == 2 and len(fit) + len(validation) == 50
    assert not set(fit["unit"]) & set(validation["unit"])  # no engine on both sides


def test_a_well_keeps_its_deepest_block_for_validation():
    train = pd.DataFrame({"depth_m": np.arange(100.0)})
    fit, validation = quality.validation_split(train, 0.2, seed=0)
    assert list(validation["depth_m"]) == list(np.arange(80.0, 100.0))
    assert fit["depth_m"].max() < validation["depth_m"].min()


def test_one_engine_cannot_be_split():
    with pytest.raises(ValueError, match="nothing to fit"):
        quality.validation_split(pd.DataFrame({"unit": [1, 1, 1], "x": [0.0, 1.0, 2.0]}), 0.2, seed=0)


def test_pooled_range_spans_every_row_order_and_nothing_else():
    v = pd.DataFrame({"pooled": [0.90, 13.0], "pooled_order_1": [0.92, 13.4], "pooled_order_2": [0.91, 12.9],
                      "histogram": [0.99, 1.0]}, index=["A", "B"])
    lo, hi = quality.pooled_range(v)
    assert list(lo) == [0.90, 12.9] and list(hi) == [0.92, 13.4]


def _table(label: str, metric: str, values: dict[str, dict[str, float]]) -> pd.DataFrame:
    rows = [(label, market, method, metric, value)
            for market, by_method in values.items() for method, value in by_method.items()]
    return pd.DataFrame(rows, columns=["usecase", "market", "method", "metric", "value"])


def test_targets_say_met_or_missed_with_the_figures():
    # A (data-poor): federated beats local-only by 0.05, pooled's own spread there is 0.01 -> clearly better.
    # B: histogram 0.02 AUC under pooled (2 %), below pooled's worst order, and worse than local-only.
    values = {"A": {"pooled": 0.90, "pooled_order_1": 0.91, "histogram": 0.90, "local_only": 0.80,
                    "best_federated": 0.85, "chosen": 0.85},
              "B": {"pooled": 0.95, "pooled_order_1": 0.95, "histogram": 0.93, "local_only": 0.94,
                    "best_federated": 0.93, "chosen": 0.94}}
    lines = "\n".join(quality.targets(_table("pm", "auc", values), {"pm": "A"}))
    assert "histogram within 0.5 % of pooled (auc) on every market: MISSED — largest gap 2.11 % on B" in lines
    assert "no worse than pooled's worst order on every market: no, behind on B (0.93000 vs 0.95000)" in lines
    assert "clearly better on the data-poor market A (gain above pooled's own spread there, 0.0100): MET" in lines
    assert "at least as good as local-only (auc) on every market: MISSED on B 0.9300 vs 0.9400" in lines
    assert "at least as good as local-only: on every market" in lines


def test_a_gain_within_pooled_noise_is_not_clearly_better():
    values = {"A": {"pooled": 10.0, "pooled_order_1": 10.5, "histogram": 10.0, "local_only": 11.0,
                    "best_federated": 10.8, "chosen": 10.8}}
    lines = "\n".join(quality.targets(_table("drill", "rmse", values), {"drill": "A"}))
    assert "clearly better on the data-poor market A (gain above pooled's own spread there, 0.5000): MISSED" in lines
    assert "histogram no worse than pooled's worst order on every market: yes" in lines
