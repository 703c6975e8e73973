"""Deployed mode end to end: per-market agents, rounds started as the Prefect UI starts them, faults.

Each test talks to a real `prefect server start` only through its REST API, as the UI does.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
import tomli_w
import xgboost as xgb

from fedpipe.stack import kill_tree

pytestmark = pytest.mark.e2e

MARKETS = ("FD001", "FD002", "FD003", "FD004")


def _assert_round_completed(app, flow_run_id: str, run_id: str, contributors=MARKETS) -> dict:
    run = app.wait(flow_run_id)
    assert run["state"]["type"] == "COMPLETED", (run["state"], f"logs: {app.stack.root}/logs")
    assert run["parameters"]["dispatch"] == "deployments"  # the deployment's default, kept by the custom run

    # The new global model: every contributor's 2 trees, signed and posted to the exchange.
    run_dir = app.root / "centre" / "runs" / run_id
    booster = xgb.Booster()
    booster.load_model(str(run_dir / "models" / "round-001.json"))
    assert booster.num_boosted_rounds() == 2 * len(contributors)
    rounds = json.loads((run_dir / "rounds.json").read_text())
    assert sorted(rounds[0]["contributors"]) == sorted(contributors)

    # Through the API: each market's flows ran on its own pool, and the round published its ROI table.
    children = app.children(flow_run_id)
    trained = {c["parameters"]["market"]: c for c in children if c["name"].endswith("train round 1")}
    assert set(trained) == set(MARKETS)
    for market in contributors:
        assert trained[market]["work_pool_name"] == f"market-{market}"
        assert trained[market]["state"]["type"] == "COMPLETED"
    roi = app.artifacts("e2e-fed-round-roi")
    assert roi, "no ROI artifact"
    table = roi[0]["data"] if isinstance(roi[0]["data"], list) else json.loads(roi[0]["data"])
    markets = {row["market"] for row in table}
    assert markets == {*contributors, "federation"}
    assert any(a["flow_run_id"] == flow_run_id for a in roi)

    # Nothing the centre holds names where a market's data lives.
    for site in app.sites.values():
        for path in (app.root / "centre").rglob("*"):
            if path.is_file() and path.suffix in (".json", ".toml", ".md"):
                assert str(site.data) not in path.read_text(errors="ignore")
    return rounds[0]


def _schedules(app) -> list[str]:
    deployment = app.http.get("/deployments/name/federated-training/e2e-fed").json()
    return [s["schedule"]["cron"] for s in deployment["schedules"]]


def test_round_from_the_ui_runs_on_the_market_agents(deployed, write_federation):
    # `fedpipe deploy` is idempotent: the same deployments, the cadence as one cron schedule, removable.
    before = deployed.deployment_id("federated-training/e2e-fed")
    weekly = write_federation(deployed.root, "weekly.toml", cadence="0 3 * * 1")
    for _ in range(2):
        deployed.stack.fedpipe("deploy", "--config", str(weekly))
        assert _schedules(deployed) == ["0 3 * * 1"]
    deployed.stack.fedpipe("deploy", "--config", str(deployed.config))
    assert _schedules(deployed) == []
    assert deployed.deployment_id("federated-training/e2e-fed") == before
    pools = deployed.http.post("/work_pools/filter", json={}).json()
    assert {p["name"] for p in pools} >= {"fedpipe-central", *(f"market-{m}" for m in MARKETS)}

    flow_run_id = deployed.start_round(rounds=1, run_id="from-the-ui")
    _assert_round_completed(deployed, flow_run_id, "from-the-ui")


def test_histogram_round_joins_each_markets_worker_from_its_own_agent(deployed):
    """Exact federated XGBoost on agents: each market makes its TLS key and trains as a worker on its own pool."""
    flow_run_id = deployed.start_round(rounds=1, run_id="histogram-on-agents", strategy="histogram")
    run = deployed.wait(flow_run_id)
    assert run["state"]["type"] == "COMPLETED", (run["state"], f"logs: {deployed.stack.root}/logs")
    run_dir = deployed.root / "centre" / "runs" / "histogram-on-agents"
    booster = xgb.Booster()
    booster.load_model(str(run_dir / "models" / "round-001.json"))
    assert booster.num_boosted_rounds() == 2  # the collective's trees once, not once per market
    assert sorted(json.loads((run_dir / "rounds.json").read_text())[0]["contributors"]) == sorted(MARKETS)
    children = deployed.children(flow_run_id)
    for name in ("join the histogram collective", "(histogram)"):
        runs = {c["parameters"]["market"]: c for c in children if name in c["name"]}
        assert set(runs) == set(MARKETS), name
        assert {m: (r["work_pool_name"], r["state"]["type"]) for m, r in runs.items()} == \
            {m: (f"market-{m}", "COMPLETED") for m in MARKETS}
    # Each market's TLS private key lives in its own keys folder; the centre holds none of them.
    for market, site in deployed.sites.items():
        assert list(Path(site.keys_dir).rglob("*key*.pem")), market
    centre_keys = {p.name for p in (deployed.root / "centre" / "keys").rglob("*.pem") if "key" in p.name}
    assert centre_keys <= {"ca-key.pem", "server-key.pem"}


def test_secure_fedavg_round_runs_on_the_market_agents(deployed, write_federation):
    """fedavg with secure aggregation on agents: masked feature statistics, masked weights, masked evaluation."""
    def market_copies(**fields):  # the council's file as each market holds it (centre folders unknown there)
        for market in MARKETS:
            write_federation(deployed.root / "markets" / market, "federation.toml", keys_dir="/nonexistent/centre-keys",
                             runs_dir="/nonexistent/centre-runs", exchange="/nonexistent/exchange", **fields)

    config = write_federation(deployed.root, "fedavg-secure.toml", strategy="fedavg", secure_aggregation=True)
    market_copies(strategy="fedavg", secure_aggregation=True)
    try:
        flow_run_id = deployed.start_round(config=str(config), rounds=1, run_id="fedavg-on-agents")
        run = deployed.wait(flow_run_id)
    finally:
        market_copies()
    assert run["state"]["type"] == "COMPLETED", (run["state"], f"logs: {deployed.stack.root}/logs")
    run_dir = deployed.root / "centre" / "runs" / "fedavg-on-agents"
    model = json.loads((run_dir / "models" / "round-001.json").read_text())
    assert model["family"] == "linear" and any(model["coef"])
    record = json.loads((run_dir / "rounds.json").read_text())[0]
    assert record["contributors"] == {m: None for m in MARKETS}  # row counts stayed inside the masked sums
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    assert set(metrics["market"]) == {"federation"}  # totals only
    children = deployed.children(flow_run_id)
    for name in ("feature statistics", "(fedavg)", "evaluate round 1"):
        runs = {c["parameters"]["market"]: c for c in children if name in c["name"]}
        assert {m: (r["work_pool_name"], r["state"]["type"]) for m, r in runs.items()} == \
            {m: (f"market-{m}", "COMPLETED") for m in MARKETS}, name


def test_round_on_a_postgresql_server(deployed_pg):
    flow_run_id = deployed_pg.start_round(rounds=1, run_id="on-postgres")
    _assert_round_completed(deployed_pg, flow_run_id, "on-postgres")


def test_killed_agent_and_hung_market_are_dropped_and_a_rerun_works(deployed, write_federation):
    """FD002's agent dies mid-round, FD003 hangs: both time out, the round goes on with the other two."""
    timeout_s = 90
    config = write_federation(deployed.root, "quorum-two.toml", quorum=2, market_timeout_s=timeout_s)
    hung = deployed.sites["FD003"]
    doc = {k: str(v) for k, v in hung.model_dump(exclude={"source", "fault_delay_s"}).items()}
    hung.source.write_bytes(tomli_w.dumps({**doc, "fault_delay_s": 3600}).encode())
    # FD002 is slowed too, so the kill below lands mid-flow however fast or loaded the machine is.
    killed = deployed.sites["FD002"]
    killed_doc = {k: str(v) for k, v in killed.model_dump(exclude={"source", "fault_delay_s"}).items()}
    killed.source.write_bytes(tomli_w.dumps({**killed_doc, "fault_delay_s": 60}).encode())

    flow_run_id = deployed.start_round(config=str(config), run_id="with-faults")
    deadline = time.monotonic() + 300
    while True:  # kill FD002's agent (and its flow run) once its training has started
        runs = {c["parameters"]["market"]: c for c in deployed.children(flow_run_id) if "train" in c["name"]}
        if runs.get("FD002", {}).get("state", {}).get("type") == "RUNNING":
            break
        assert time.monotonic() < deadline, "FD002 never started"
        time.sleep(1)
    kill_tree(deployed.stack.processes.pop("agent-FD002"))

    record = _assert_round_completed(deployed, flow_run_id, "with-faults", contributors=("FD001", "FD004"))
    for market in ("FD002", "FD003"):
        assert f"did not finish within {timeout_s} s" in record["dropped"][market]
    hung_run = next(c["id"] for c in deployed.children(flow_run_id)
                    if "train" in c["name"] and c["parameters"]["market"] == "FD003")
    assert deployed.wait(hung_run, timeout_s=120)["state"]["type"] == "CANCELLED"  # its agent stopped it

    # Rerun after the agent is back and the hang cleared: everyone contributes again.
    hung.source.write_bytes(tomli_w.dumps(doc).encode())
    killed.source.write_bytes(tomli_w.dumps(killed_doc).encode())
    deployed.stack.start_agent("FD002", deployed.sites["FD002"].source)
    flow_run_id = deployed.start_round(config=str(config), run_id="after-faults")
    _assert_round_completed(deployed, flow_run_id, "after-faults")
