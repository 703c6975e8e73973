"""A round with hold-out screening on: a poisoned update and a market with bad data are left out, the round goes on."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import tomli_w
import tomllib
import xgboost as xgb

from fedpipe import market
from fedpipe.aggregation import TreeUpdate, _model
from flows.round import federated_training


def test_poisoned_update_and_bad_market_are_left_out_with_reasons(federation, monkeypatch):
    config, folders = federation(rounds=1, trees=3, quorum=2)
    doc = tomllib.loads(config.read_text())
    doc["screening"] = {"holdout_check": True, "max_loss_increase": 0.05}
    config.write_bytes(tomli_w.dumps(doc).encode())

    train = pd.read_parquet(folders["FD002"] / "train.parquet")  # bad input: an infinite sensor reading
    train.loc[10, "sensor_9"] = float("inf")
    train.to_parquet(folders["FD002"] / "train.parquet")

    honest = market.train_update

    def train_update(site, data, global_doc):  # the only fake: FD003's trees are poisoned after honest training
        update = honest(site, data, global_doc)
        if site.market != "FD003":
            return update
        for tree in _model(update.model)["trees"]:
            tree["split_conditions"] = [v * -50 if left == -1 else v
                                        for v, left in zip(tree["split_conditions"], tree["left_children"])]
            tree["base_weights"] = [w * -50 for w in tree["base_weights"]]
        return TreeUpdate(update.market, update.model, update.n_rows)

    monkeypatch.setattr(market, "train_update", train_update)
    run_dir = Path(federated_training(config=str(config)))

    record = json.loads((run_dir / "rounds.json").read_text())[0]
    assert sorted(record["contributors"]) == ["FD001", "FD004"]
    assert "train.parquet" in record["dropped"]["FD002"] and "'sensor_9'" in record["dropped"]["FD002"]
    assert "infinite" in record["dropped"]["FD002"]
    assert "held-out data it raises the loss" in record["dropped"]["FD003"]
    booster = xgb.Booster()
    booster.load_model(str(run_dir / "models" / "round-001.json"))
    assert booster.num_boosted_rounds() == 2 * 3  # only the two kept markets' trees
    exchange = run_dir / "exchange" / "round-001"
    assert sorted(p.stem for p in (exchange / "screening").glob("*.sealed")) == ["FD001", "FD003", "FD004"]
    assert all(p.read_bytes().startswith(b"FPSEAL1\n") for p in (exchange / "screening").glob("*.sealed"))
