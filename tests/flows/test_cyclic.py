"""The round flow with the cyclic strategy: the model visits the markets in turn, a broken market is skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import xgboost as xgb

from fedpipe import sealing
from flows.round import federated_training


def test_cyclic_round_visits_markets_in_turn_and_skips_a_broken_one(federation):
    config, folders = federation(markets=("FD001", "FD002", "FD003"), rounds=2, trees=2, quorum=2,
                                 strategy="cyclic")
    train = folders["FD002"] / "train.parquet"
    pd.read_parquet(train).drop(columns=["sensor_4"]).to_parquet(train)  # FD002 fails its contract

    run_dir = Path(federated_training(config=str(config)))

    rounds = json.loads((run_dir / "rounds.json").read_text())
    assert [sorted(r["contributors"]) for r in rounds] == [["FD001", "FD003"]] * 2
    assert "'sensor_4'" in rounds[0]["dropped"]["FD002"]
    booster = xgb.Booster()
    booster.load_model(str(run_dir / "models" / "round-002.json"))
    assert booster.num_boosted_rounds() == 2 * 2 * 2  # rounds x visiting markets x trees, each at weight 1
    exchange = run_dir / "exchange"
    for round_ in (1, 2):
        visits = exchange / f"round-{round_:03d}" / "visits"
        assert sorted(p.name for p in visits.glob("*.json")) == ["after-01.json", "after-02.json"]
        # The last visit model is the round's global model; FD003 started from the one FD001 left.
        assert (visits / "after-02.json").read_bytes() == (run_dir / "models" / f"round-{round_:03d}.json").read_bytes()
        envelope = (exchange / f"round-{round_:03d}" / "updates" / "FD003.sealed").read_bytes()
        assert sealing.describe(envelope)["parent"] == sealing.sha256_hex((visits / "after-01.json").read_bytes())
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    assert set(metrics["market"]) == {"FD001", "FD003", "federation"}
    assert "strategy `cyclic`" in (run_dir / "summary.md").read_text()


def test_cyclic_refuses_holdout_screening(federation):
    config, _ = federation(markets=("FD001", "FD002"), rounds=1, trees=1, quorum=2, strategy="cyclic")
    text = config.read_text() + "\n[screening]\nholdout_check = true\n"
    config.write_text(text)
    with pytest.raises(ValueError, match="cannot be combined with \\[screening\\] holdout_check"):
        federated_training(config=str(config))
