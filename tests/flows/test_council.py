"""The data council's checks in the real round flow: schema check before round 1, lineage, registry gate."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import tomli_w
import tomllib

from fedpipe.registry import Registry
from flows.round import federated_training


def test_market_with_a_different_schema_is_stopped_before_round_1(federation):
    config, folders = federation(markets=("FD001", "FD002", "FD003", "FD004"), rounds=1, trees=2, quorum=2)
    train = pd.read_parquet(folders["FD003"] / "train.parquet")
    train.loc[train["cycle"] == 1, "setting_3"] = 42.0  # each engine's first cycle: a setting outside the set
    train.to_parquet(folders["FD003"] / "train.parquet")
    pd.read_parquet(folders["FD004"] / "train.parquet").drop(columns=["sensor_9"]).to_parquet(
        folders["FD004"] / "train.parquet")

    run_dir = Path(federated_training(config=str(config)))

    check = json.loads((run_dir / "schema-check.json").read_text())
    assert check["allowed"] == ["FD001", "FD002"]
    kept = 20  # subsample 0.2 keeps 20 of FD003's 100 engines, one first cycle each
    assert check["diffs"]["FD003"] == [f"FD003: train.parquet: column 'setting_3': {kept} values outside the "
                                       "contract's category set [60.0, 100.0]"]
    assert check["stopped"]["FD004"] == ("market 'FD004': stopped before round 1: <market data>/train.parquet: "
                                         "field 'sensor_9': required column is missing")  # the loader's own check
    record = json.loads((run_dir / "rounds.json").read_text())[0]
    assert sorted(record["contributors"]) == ["FD001", "FD002"]
    assert record["dropped"]["FD003"].startswith("market 'FD003': stopped before round 1, schema differs from "
                                                 "contract predictive_maintenance 1.1.0: train.parquet: column "
                                                 "'setting_3'")
    exchange = run_dir / "exchange"
    assert not (exchange / "round-001" / "status" / "FD003.json").exists()  # it never started training
    assert not (exchange / "round-001" / "updates" / "FD003.sealed").exists()
    lineage = json.loads((run_dir / "models" / "round-001.lineage.json").read_text())
    assert sorted(lineage["markets"]) == ["FD001", "FD002"] and "FD003" in lineage["left_out"]


def test_registry_gate_lineage_across_two_runs(federation, tmp_path):
    """Run 1 becomes champion. Run 2 trains a much weaker model (1 stump per market) on data where one
    market changed one value: the gate blocks it (challenger), and only that market's fingerprint changed."""
    config, folders = federation(markets=("FD001", "FD002", "FD003"), rounds=1, trees=4, quorum=2)
    first = Path(federated_training(config=str(config), run_id="strong"))
    registry = Registry(tmp_path / "registry", "test-fed")
    assert registry.aliases() == {"champion": 1, "challenger": None}

    train = pd.read_parquet(folders["FD002"] / "train.parquet")
    train.loc[train.index[0], "sensor_2"] += 0.01
    train.to_parquet(folders["FD002"] / "train.parquet")
    doc = tomllib.loads(config.read_text())
    doc["federation"]["trees_per_round"] = 1
    doc["model"]["max_depth"] = 1
    config.write_bytes(tomli_w.dumps(doc).encode())
    second = Path(federated_training(config=str(config), run_id="weak"))

    assert registry.aliases() == {"champion": 1, "challenger": 2}
    gate = registry.load(2, "gate.json")
    assert not gate["passed"] and gate["metric"] == "log_loss" and gate["tolerance"] == 0.01
    assert set(gate["blocked_by"]) == {"FD001", "FD002", "FD003"}
    for market, row in gate["markets"].items():
        assert row["worse_by"] > 0.01 and f"{market} (log_loss" in gate["summary"]
    card = registry.load(2, "card.md")
    assert "## Intended use" in card and "## Limitations" in card and "not passed" in card

    old = json.loads((first / "models" / "round-001.lineage.json").read_text())["markets"]
    new = json.loads((second / "models" / "round-001.lineage.json").read_text())["markets"]
    assert new["FD002"]["fingerprint"]["train"] != old["FD002"]["fingerprint"]["train"]
    assert all(new[m]["fingerprint"] == old[m]["fingerprint"] for m in ("FD001", "FD003"))
    assert new["FD002"]["validation"][0]["success"] and new["FD002"]["contract_version"] == "1.1.0"
    assert registry.load(2, "lineage.json")["registry_parent"] == 1
