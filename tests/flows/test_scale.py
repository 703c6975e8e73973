"""Load: 32 markets (C-MAPSS engines split by unit id) complete a round in the embedded default."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import xgboost as xgb

from fedpipe.split import write_federation
from flows.round import federated_training


def test_32_markets_complete_a_round(tmp_path):
    config = write_federation(32, tmp_path, rounds=1, trees=1, quorum=32, max_depth=3)
    run_dir = Path(federated_training(config=str(config)))
    record = json.loads((run_dir / "rounds.json").read_text())[0]
    assert len(record["contributors"]) == 32 and record["dropped"] == {}
    booster = xgb.Booster()
    booster.load_model(str(run_dir / "models" / "round-001.json"))
    assert booster.num_boosted_rounds() == 32
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    assert metrics["market"].nunique() == 32 + 1 and metrics["auc"].between(0.5, 1.0).all()  # + "federation"
