"""The round flow with the histogram strategy: a real federated server, one process per market, mutual TLS."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import xgboost as xgb
from prefect import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName

from flows.round import federated_training

pytestmark = pytest.mark.skipif(not xgb.build_info().get("USE_FEDERATED"), reason="xgboost without federated plugin")


async def _runs(flow_name):
    async with get_client() as client:
        return await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))


def test_histogram_round_flow_grows_one_shared_set_of_trees(federation):
    config, _ = federation(markets=("FD001", "FD004"), rounds=2, trees=2, quorum=2, strategy="histogram")
    run_dir = Path(federated_training(config=str(config)))
    rounds = json.loads((run_dir / "rounds.json").read_text())
    assert [sorted(r["contributors"]) for r in rounds] == [["FD001", "FD004"]] * 2
    booster = xgb.Booster()
    booster.load_model(str(run_dir / "models" / "round-002.json"))
    assert booster.num_boosted_rounds() == 2 * 2  # the round's trees once, not once per market
    runs = asyncio.run(_runs("market-train-histogram"))
    assert len([r for r in runs if r.state.is_completed()]) >= 4  # each market's process reported to Prefect
    assert "strategy `histogram`" in (run_dir / "summary.md").read_text()
    # each market made its own TLS key; the centre signed its CSR in round 1, the certificate was kept in round 2
    tls_exchange = run_dir / "exchange"
    assert (tls_exchange / "round-001" / "tls" / "FD001.pem").exists()
    assert (tls_exchange / "round-002" / "tls" / "FD004.held.pem").exists()
    assert not [p for p in tls_exchange.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()]


def test_histogram_collective_forms_without_a_market_whose_data_fails_the_contract(federation):
    config, folders = federation(markets=("FD001", "FD002", "FD004"), rounds=1, trees=2, quorum=2,
                                 strategy="histogram", market_timeout_s=300)
    table = pd.read_parquet(folders["FD002"] / "train.parquet").drop(columns=["sensor_4"])
    table.to_parquet(folders["FD002"] / "train.parquet")
    run_dir = Path(federated_training(config=str(config)))
    record = json.loads((run_dir / "rounds.json").read_text())[0]
    assert sorted(record["contributors"]) == ["FD001", "FD004"]  # the collective formed with the other two
    reason = record["dropped"]["FD002"]
    assert "FD002" in reason and "train.parquet" in reason and "'sensor_4'" in reason
    assert not (run_dir / "exchange" / "round-001" / "tls" / "FD002.pem").exists()  # it never asked to dial
    assert xgb.Booster(model_file=str(run_dir / "models" / "round-001.json")).num_boosted_rounds() == 2


def test_unknown_strategy_is_refused_before_training(federation):
    config, _ = federation(markets=("FD001", "FD004"), rounds=1, trees=1, quorum=2)
    with pytest.raises(ValueError, match="strategy .gossip. is not one the round flow runs"):
        federated_training(config=str(config), strategy="gossip")


EMBEDDED = """
from prefect import flow, get_client
from flows.strategies import current_api_url

@flow
def reports_to():
    with get_client(sync_client=True) as client:
        return current_api_url(), str(client.api_url)

print("API", *reports_to())
"""


def test_embedded_market_processes_are_pointed_at_the_runs_own_temporary_server(tmp_path):
    """Without PREFECT_API_URL (fedpipe run's embedded mode), histogram's market processes get the temporary
    server's URL, rather than each starting a server of its own."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path), PYTHONPATH=str(Path(__file__).resolve().parents[2]),
               PREFECT_SERVER_ANALYTICS_ENABLED="false")
    out = subprocess.run([sys.executable, "-c", EMBEDDED], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    handed_on, flow_api = next(line.split()[1:] for line in out.stdout.splitlines() if line.startswith("API "))
    assert handed_on.startswith("http://127.0.0.1:") and handed_on.rstrip("/") == flow_api.rstrip("/")
