"""Tests for usecases/predictive_maintenance/features.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from usecases.predictive_maintenance import data as pm_data
from usecases.predictive_maintenance.data import SENSORS, SETTINGS, load_market
from usecases.predictive_maintenance.features import FEATURE_COLUMNS, build_features

DATA = Path(pm_data.__file__).parent / "data"


def _tiny() -> pd.DataFrame:
    """Two engines, rows shuffled, a non-default index; sensor_1 carries the values, other sensors are 0."""
    rows = [  # unit, cycle, sensor_1
        (2, 2, 20.0),
        (1, 3, 8.0),
        (1, 1, 1.0),
        (2, 1, 10.0),
        (1, 2, 3.0),
    ]
    table = pd.DataFrame(rows, columns=["unit", "cycle", "sensor_1"], index=[50, 40, 30, 20, 10])
    for column in [*SETTINGS, *SENSORS[1:]]:
        table[column] = 0.0
    table["setting_1"] = [0.5, 0.4, 0.3, 0.2, 0.1]
    table["rul"] = [7, 8, 9, 10, 11]
    table["failure_within_horizon"] = 1
    return table


def test_hand_computed_rolling_mean_and_std_in_input_order():
    table = _tiny()
    features = build_features(table, window=2)
    assert list(features.columns) == FEATURE_COLUMNS
    assert list(features.index) == [50, 40, 30, 20, 10]
    # unit 1: 1, 3, 8 -> means 1, 2, 5.5 and std 0 (single value), sqrt(2), sqrt(12.5); unit 2: 10, 20
    expected_mean = {50: 15.0, 40: 5.5, 30: 1.0, 20: 10.0, 10: 2.0}
    expected_std = {50: np.sqrt(50.0), 40: np.sqrt(12.5), 30: 0.0, 20: 0.0, 10: np.sqrt(2.0)}
    np.testing.assert_allclose(features["sensor_1_mean"], pd.Series(expected_mean)[features.index], rtol=1e-12)
    np.testing.assert_allclose(features["sensor_1_std"], pd.Series(expected_std)[features.index], rtol=1e-12)
    assert (features[[f"{s}_std" for s in SENSORS[1:]]] == 0).all().all()
    # own columns pass through unchanged, in the input order
    assert list(features["cycle"]) == [2, 3, 1, 1, 2]
    assert list(features["setting_1"]) == [0.5, 0.4, 0.3, 0.2, 0.1]


def test_window_of_one_is_the_sensor_itself_and_default_window_is_ten():
    table = _tiny()
    one = build_features(table, window=1)
    assert (one["sensor_1_mean"] == table["sensor_1"]).all() and (one["sensor_1_std"] == 0).all()
    pd.testing.assert_frame_equal(build_features(table), build_features(table, window=10))


def test_same_columns_whatever_the_market_and_no_label_leak():
    columns = None
    for subset in ("FD001", "FD004"):
        market = load_market(subset, DATA / subset, {})
        for table in (market.train, market.test):
            features = build_features(table)
            assert list(features.columns) == FEATURE_COLUMNS
            assert (features.dtypes == "float64").all()
            assert not features.isna().any().any()
            columns = columns or list(features.columns)
            assert list(features.columns) == columns
    assert len(FEATURE_COLUMNS) == 3 + 21 + 1 + 21 + 21
    assert "rul" not in FEATURE_COLUMNS and "failure_within_horizon" not in FEATURE_COLUMNS


def test_matches_a_per_engine_loop_on_real_data_in_any_row_order():
    test = load_market("FD004", DATA / "FD004", {}).test
    shuffled = test.sample(frac=1.0, random_state=3)
    features = build_features(shuffled, window=10)
    pd.testing.assert_frame_equal(features, build_features(test, window=10).loc[shuffled.index])
    for unit in (1, 117, 248):
        rows = test[test["unit"] == unit].sort_values("cycle")
        window = rows[SENSORS].rolling(10, min_periods=1)
        np.testing.assert_allclose(features.loc[rows.index, [f"{s}_mean" for s in SENSORS]], window.mean(), rtol=1e-9)
        np.testing.assert_allclose(
            features.loc[rows.index, [f"{s}_std" for s in SENSORS]], window.std().fillna(0.0), rtol=1e-9, atol=1e-9
        )


def test_missing_column_and_bad_window_are_refused():
    with pytest.raises(KeyError, match="sensor_5"):
        build_features(_tiny().drop(columns="sensor_5"))
    for window in (0, 2.5, True):
        with pytest.raises(ValueError, match="window"):
            build_features(_tiny(), window=window)
