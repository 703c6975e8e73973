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
