"""The RUL task: ``[usecase] task = "rul"`` turns predictive maintenance into capped-RUL regression."""

import numpy as np
import pandas as pd
import pytest

from fedpipe.errors import ConfigError
from fedpipe.usecase import get_usecase
from usecases.predictive_maintenance.rul import capped_rul, rul_value


def test_task_switches_label_objective_and_target():
    base = get_usecase("predictive_maintenance")
    rul = base.for_task({"task": "rul"})
    assert (base.objective, rul.objective) == ("binary:logistic", "reg:squarederror")
    assert base.for_task({}) is base
    table = pd.DataFrame({"rul": [300, 125, 40, 0], "failure_within_horizon": [0, 0, 0, 1]})
    np.testing.assert_array_equal(rul.target(table, {}), [125, 125, 40, 0])
    np.testing.assert_array_equal(rul.target(table, {"rul_cap": 100}), [100, 100, 40, 0])
    np.testing.assert_array_equal(base.target(table, {}), [0, 0, 0, 1])
    with pytest.raises(ConfigError, match="no task 'ttf'"):
        base.for_task({"task": "ttf"})
    with pytest.raises(ValueError, match="rul_cap"):
        capped_rul(table, {"rul_cap": -1})


def test_rul_policy_maintains_engines_predicted_within_horizon():
    test = pd.DataFrame({"unit": [1, 2], "cycle": [10, 10], "rul": [5, 90], "failure_within_horizon": [1, 0]})
    value = rul_value(test, np.array([12.0, 80.0]), {"horizon": 30})
    assert (value["tp"], value["fp"], value["fn"]) == (1, 0, 0)
