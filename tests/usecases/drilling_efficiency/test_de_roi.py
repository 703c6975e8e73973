"""Drilling ROI: recommendations stay within the window's settings, credit only where the model is right."""

from __future__ import annotations

from pathlib import Path

import pytest
import xgboost as xgb

from usecases.drilling_efficiency import USECASE
from usecases.drilling_efficiency.data import load_market
from usecases.drilling_efficiency.roi import drilling_value, window_ranges

DATA = Path(__file__).resolve().parents[3] / "usecases" / "drilling_efficiency" / "data"
RATE = {"rig_spread_rate_per_day": 240000, "programme_cost_per_hour": 100}


@pytest.fixture(scope="module")
def well():
    data = load_market("F-9", DATA / "F-9", {})
    booster = xgb.train({"max_depth": 4, "eta": 0.3, "objective": USECASE.objective, "nthread": 1},
                        xgb.DMatrix(USECASE.features(data.train, {}), data.train[USECASE.label]), 30)
    predict = lambda table: booster.predict(xgb.DMatrix(USECASE.features(table, {})))  # noqa: E731
    return data.test, predict


def test_without_a_model_nothing_is_saved_and_the_programme_is_a_loss(well):
    test, _ = well
    value = drilling_value(test, test["rop_m_per_h"].to_numpy(), RATE)
    hours = value["hours_actual"]
    assert value["cost_no_model"] == pytest.approx(hours * 10000)  # 240000 a day = 10000 an hour
    assert value["hours_saved"] == 0 and value["savings"] == pytest.approx(-value["programme_cost"])
    assert value["programme_cost"] == pytest.approx(100 * hours) and value["roi"] == pytest.approx(-1)


def test_what_if_settings_never_leave_the_trailing_window(well):
    test, predict = well
    seen = []
    value = drilling_value(test, predict(test), {**RATE, "window_m": 10},
                           predict=lambda table: (seen.append(table.copy()), predict(table))[1])
    what_if = seen[0]
    depth = test["depth_m"].to_numpy()
    ranges = window_ranges(test, depth, 10)
    k = len(what_if) // len(test)
    for control in ("wob_kkgf", "rpm"):
        values = what_if[control].to_numpy().reshape(len(test), k)
        assert (values >= ranges[control][:, [0]] - 1e-9).all() and (values <= ranges[control][:, [1]] + 1e-9).all()
        i = len(test) // 2
        window = test[(test["depth_m"] >= depth[i] - 10) & (test["depth_m"] <= depth[i])][control]
        assert ranges[control][i].tolist() == [window.min(), window.max()]
    assert 0 <= value["hours_saved"] <= value["hours_actual"] * (1 - 1 / 1.5) + 1e-9  # capped at max_speedup 1.5
    assert value["savings"] == pytest.approx(value["cost_no_model"] - value["cost_model"])


def test_no_credit_where_the_model_misses_the_observed_rop(well):
    test, predict = well
    wrong = test["rop_m_per_h"].to_numpy() * 2.0  # every prediction 100 % off: outside trust_tolerance
    value = drilling_value(test, wrong, RATE, predict=predict)
    assert value["credited_share"] == 0 and value["hours_saved"] == 0


def test_a_useful_model_saves_rig_time(well):
    test, predict = well
    value = drilling_value(test, predict(test), RATE, predict=predict)
    assert value["credited_share"] > 0.2 and value["hours_saved"] > 0
    assert value["roi"] == pytest.approx(value["savings"] / value["programme_cost"])


@pytest.mark.parametrize("key,bad", [("max_speedup", 0.5), ("grid_points", 1), ("window_m", -1), ("rig_spread_rate_per_day", "x")])
def test_bad_parameters_are_named(well, key, bad):
    test, _ = well
    with pytest.raises(ValueError, match=key):
        drilling_value(test, test["rop_m_per_h"].to_numpy(), {key: bad})
