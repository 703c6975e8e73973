"""Personalisation: a few local trees on top of the global model, and the per-market choice."""

import numpy as np
import pytest
import xgboost as xgb

from fedpipe.strategies.personal import choose, personalise


def test_personalised_model_adds_local_trees_and_fits_the_market_better():
    rng = np.random.default_rng(0)
    params = {"objective": "reg:squarederror", "max_depth": 3, "eta": 0.3}
    x_g = rng.normal(size=(500, 3))
    glob = xgb.train(params, xgb.DMatrix(x_g, label=x_g[:, 0]), 10)
    x = rng.normal(size=(300, 3))
    local = xgb.DMatrix(x, label=x[:, 0] + 2.0)  # this market is shifted
    own = personalise(glob, params, local, local_trees=5)
    assert own.num_boosted_rounds() == 15 and glob.num_boosted_rounds() == 10
    err = lambda b: np.mean((b.predict(local) - local.get_label()) ** 2)  # noqa: E731
    assert err(own) < 0.5 * err(glob)


def test_choice_by_metric_direction():
    assert choose({"local_only": 0.20, "global": 0.15, "personalised": 0.16}, "log_loss") == "global"
    assert choose({"local_only": 0.97, "global": 0.98, "personalised": 0.99}, "auc") == "personalised"
    assert choose({"local_only": 1.0, "global": 1.0}, "rmse") == "local_only"
    with pytest.raises(ValueError):
        personalise(None, {}, None, local_trees=0)


def test_choice_table_names_the_best_model_per_market():
    import pandas as pd

    from fedpipe.strategies.personal import choice_table

    rows = [(2, "A", "local_only", 0.30), (2, "A", "federated", 0.20), (2, "A", "personalised", 0.25),
            (2, "B", "local_only", 0.10), (2, "B", "federated", 0.20), (2, "B", "personalised", 0.15),
            (2, "federation", "federated", 0.2), (1, "A", "local_only", 0.01)]
    table = choice_table(pd.DataFrame(rows, columns=["round", "market", "model", "log_loss"]).assign(auc=0.9))
    assert dict(zip(table["market"], table["best"])) == {"A": "global", "B": "local_only"}
    assert table.loc[table["market"] == "A", "log_loss personalised"].item() == 0.25
