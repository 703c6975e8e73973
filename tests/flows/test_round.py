"""The round flow end to end, on real C-MAPSS data, real Great Expectations, real XGBoost and real sealing."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest
import xgboost as xgb
from prefect import get_client
from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterState,
                                            FlowRunFilterStateType)
from prefect.client.schemas.objects import StateType
from prefect.context import FlowRunContext

from flows.round import federated_training

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The demo federation exactly as `make demo` runs it, in a scratch working folder."""
    work = tmp_path_factory.mktemp("demo")
    old = os.getcwd()
    os.chdir(work)
    try:
        run_dir = Path(federated_training(config=str(REPO / "federations" / "cmapss.toml")))
    finally:
        os.chdir(old)
    return run_dir


def test_demo_writes_a_model_per_round_and_the_tables(demo_run):
    rounds = json.loads((demo_run / "rounds.json").read_text())
    assert [r["round"] for r in rounds] == [1, 2, 3, 4, 5]
    assert all(sorted(r["contributors"]) == ["FD001", "FD002", "FD003", "FD004"] for r in rounds)
    assert (demo_run.parent / "latest").resolve() == demo_run.resolve()

    booster = xgb.Booster()
    booster.load_model(str(demo_run / "models" / "round-005.json"))
    assert booster.num_boosted_rounds() == 5 * 4 * 10  # every market's 10 trees, every round

    metrics = pd.read_parquet(demo_run / "metrics.parquet")
    assert len(metrics) == 5 * (4 * 3 + 2)  # per market: federated, local-only, personalised; + 2 federation rows
    assert {"round", "market", "model", "auc", "precision", "recall", "log_loss", "rows"} <= set(metrics.columns)
    assert metrics["auc"].between(0.9, 1.0).all()

    roi = pd.read_parquet(demo_run / "roi.parquet")
    assert len(roi) == 5 * 5
    last = roi[roi["round"] == 5].set_index("market")
    markets = last.drop(index="federation")
    assert last.loc["federation", "savings"] == pytest.approx(markets["savings"].sum())
    assert last.loc["federation", "roi"] == pytest.approx(markets["savings"].sum() / markets["programme_cost"].sum())
    assert "local-only vs federated" in (demo_run / "summary.md").read_text()


def test_demo_data_poor_market_beats_its_local_only_model(demo_run):
    metrics = pd.read_parquet(demo_run / "metrics.parquet")
    last = metrics[(metrics["round"] == 5) & (metrics["market"] == "FD004")].set_index("model")
    assert last.loc["federated", "train_rows"] < 0.3 * 61249  # it really is the data-poor market
    assert last.loc["federated", "log_loss"] < last.loc["local_only", "log_loss"]
    assert last.loc["federated", "auc"] > last.loc["local_only", "auc"]
    table = (demo_run / "summary.md").read_text()
    assert "| FD004 |" in table and "True" in table.split("| FD004 |")[1].split("\n")[0]


def test_demo_exchange_holds_only_sealed_bytes(demo_run):
    exchange = demo_run / "exchange"
    for sealed in exchange.rglob("*.sealed"):
        blob = sealed.read_bytes()
        assert blob.startswith(b"FPSEAL1\n")
        # trees and metrics are encrypted (JSON keys with their quotes: a bare 3-byte "auc" turns up in random bytes)
        assert b'"split_conditions"' not in blob and b'"auc"' not in blob
    notes = [json.loads(p.read_text()) for p in exchange.glob("round-00[1-9]/status/*.json")]
    assert len(notes) == 5 * 4 and all(n["status"] == "sealed" for n in notes)
    assert not any(str(REPO / "usecases") in json.dumps(n) for n in notes)  # the data path stays in the market


async def _artifact_versions(key):
    async with get_client() as client:
        return await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))


def test_demo_publishes_round_artifacts_in_prefect(demo_run):
    import asyncio

    tables = asyncio.run(_artifact_versions("cmapss-demo-round-metrics"))
    assert len(tables) >= 5  # one version per round, newest on top in the UI
    assert any("FD004" in json.dumps(a.data) for a in tables)
    assert asyncio.run(_artifact_versions("cmapss-demo-run-summary"))


def test_central_side_cannot_read_market_data(federation):
    """Deny every file open under a market's folder unless it happens inside that market's own flow."""
    config, folders = federation(rounds=2, trees=2)
    owners = {str(folder): market for market, folder in folders.items()}
    denied = []

    def guard(event, args):
        if event != "open" or not isinstance(args[0], (str, Path)):
            return
        path = str(args[0])
        for folder, owner in owners.items():
            if path.startswith(folder):
                ctx = FlowRunContext.get()
                inside = ctx is not None and ctx.flow.name.startswith("market-") and \
                    ctx.flow_run.parameters.get("market") == owner
                if not inside:
                    denied.append((path, ctx.flow.name if ctx else None))
                    raise PermissionError(f"central code may not read {path}")

    guard.active = True
    sys.addaudithook(lambda e, a: guard(e, a) if guard.active else None)
    try:
        run_dir = Path(federated_training(config=str(config)))
    finally:
        guard.active = False
    assert denied == []
    rounds = json.loads((run_dir / "rounds.json").read_text())
    assert len(rounds) == 2 and len(rounds[-1]["contributors"]) == 4


def _break(folder: Path, how: str) -> tuple[str, str | None]:
    """Break one market's training file; return (file name, field) the error must name."""
    path = folder / "train.parquet"
    if how == "missing file":
        path.unlink()
        return "train.parquet", None
    if how == "unreadable file":
        path.write_bytes(b"PAR1 this is not parquet")
        return "train.parquet", None
    table = pd.read_parquet(path)
    if how == "missing column":
        table = table.drop(columns=["sensor_4"])
        field = "sensor_4"
    else:  # wrong type
        table["sensor_7"] = table["sensor_7"].astype(str)
        table.loc[3, "sensor_7"] = "n/a"
        field = "sensor_7"
    table.to_parquet(path)
    return "train.parquet", field


@pytest.mark.parametrize("how", ["missing file", "unreadable file", "missing column", "wrong type"])
def test_bad_market_is_left_out_and_the_round_goes_on(federation, how):
    config, folders = federation(rounds=1, quorum=3)
    file, field = _break(folders["FD002"], how)
    run_dir = Path(federated_training(config=str(config)))
    record = json.loads((run_dir / "rounds.json").read_text())[0]
    assert sorted(record["contributors"]) == ["FD001", "FD003", "FD004"]
    reason = record["dropped"]["FD002"]
    assert "FD002" in reason and file in reason
    if field:
        assert f"'{field}'" in reason
    assert (run_dir / "models" / "round-001.json").exists()
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    assert set(metrics["market"]) == {"FD001", "FD003", "FD004", "federation"}  # federation: summed statistics
    # What reached the Prefect API about the failed market flow names the file, not where the market keeps it.
    failed = [r for r in asyncio.run(_failed_flow_runs()) if r.parameters.get("config") == str(config)]
    assert [r.parameters["market"] for r in failed] == ["FD002"]
    assert file in failed[0].state.message and str(folders["FD002"]) not in failed[0].state.message


async def _failed_flow_runs():
    async with get_client() as client:
        return await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.FAILED]))))


def test_below_quorum_the_run_stops_without_a_global_model(federation):
    config, folders = federation(rounds=2, quorum=3)
    _break(folders["FD002"], "missing column")
    _break(folders["FD003"], "missing file")
    state = federated_training(config=str(config), return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="quorum is 3; no global model written"):
        state.result()
    run_dir = next((config.parent / "runs").glob("test-fed-*"))
    assert not (run_dir / "models").exists()
    assert not (run_dir / "metrics.parquet").exists()
    failure = json.loads((run_dir / "failure.json").read_text())  # why it stopped stays with the run
    assert failure["round"] == 1 and {"FD002", "FD003"} <= set(failure["dropped"])
    assert "'sensor_4'" in failure["dropped"]["FD002"]
    assert "Stopped in round 1" in (run_dir / "summary.md").read_text()


def test_rul_regression_round_records_regression_metrics_and_roi(federation):
    """The second objective (capped RUL, reg:squarederror) through the same flow: RMSE/MAE and ROI per market."""
    config, _ = federation(markets=("FD001", "FD003"), rounds=2, trees=3, quorum=2, usecase={"task": "rul"})
    run_dir = Path(federated_training(config=str(config)))
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    last = metrics[metrics["round"] == 2].set_index(["market", "model"])
    assert {"rmse", "mae"} <= set(metrics.columns) and "auc" not in metrics.columns
    assert set(last.index.get_level_values("market")) == {"FD001", "FD003", "federation"}
    assert (last["rmse"] > 0).all() and (last["rmse"] < 125).all()  # in cycles, below the RUL cap
    first = metrics[(metrics["round"] == 1) & (metrics["model"] == "federated")].set_index("market")["rmse"]
    assert (last.xs("federated", level="model")["rmse"] < first).all()  # more boosting, lower error
    roi = pd.read_parquet(run_dir / "roi.parquet")
    assert {"FD001", "FD003", "federation"} == set(roi[roi["round"] == 2]["market"])
    assert "mae_federated" in (run_dir / "summary.md").read_text()  # the summary leads with MAE for regression
