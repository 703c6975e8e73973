"""fedpipe.remote's plain parts: names, the market flows it deploys, and how a dropped market is recorded.

Deploying and dispatching against a real server are covered end to end in tests/e2e/.
"""

from __future__ import annotations

import json
from uuid import uuid4

import tomli_w

from fedpipe import central, remote
from fedpipe.config import load_federation
from fedpipe.remote import MarketRun
from fedpipe.storage import Exchange


def test_every_market_flow_is_deployed_and_no_central_one():
    flows = remote.market_flows()
    assert {"market-train", "market-evaluate"} <= set(flows)
    assert "federated-training" not in flows
    assert flows["market-train"] == "flows/market.py:market_train"


def test_names():
    assert remote.market_pool("FD001") == "market-FD001"
    assert remote.market_deployment("market-train", "demo", "FD001") == "market-train/demo-FD001"


def test_timed_out_and_crashed_markets_get_a_reason_and_no_late_update(tmp_path):
    store = Exchange(tmp_path)
    store.put(store.update(1, "late"), b"sealed trees that arrived after the deadline")
    store.put(store.status(1, "bad-data"), json.dumps({"status": "excluded", "reason": "train.parquet: 'rul'"}).encode())
    runs = {
        "ok": MarketRun("ok", uuid4(), "COMPLETED"),
        "late": MarketRun("late", uuid4(), "RUNNING", "market-train did not finish within 60 s", timed_out=True),
        "bad-data": MarketRun("bad-data", uuid4(), "FAILED", "MarketDataError"),
        "crashed": MarketRun("crashed", uuid4(), "CRASHED", "process exited with -9"),
    }
    reasons = remote.record_dropped(str(tmp_path), 1, runs)
    assert set(reasons) == {"late", "bad-data", "crashed"}
    assert not store.exists(store.update(1, "late"))  # a late update never counts
    assert reasons["bad-data"] == "train.parquet: 'rul'"  # the market's own reason (file, field) is kept
    assert "CRASHED" in reasons["crashed"]
    note = json.loads(store.get(store.status(1, "late")))
    assert note == {"market": "late", "round": 1, "status": "dropped", "reason": "market-train did not finish within 60 s"}
    assert central._status_reason(store, 1, "crashed") == reasons["crashed"]  # what the round will record


def test_exchange_url_gets_one_prefix_per_run(tmp_path, monkeypatch):
    doc = {"federation": {"name": "f", "usecase": "predictive_maintenance", "quorum": 1, "exchange": "memory://council",
                          "runs_dir": str(tmp_path / "runs"), "keys_dir": str(tmp_path / "keys")},
           "model": {"base_score": 0.5}, "markets": {"A": {"data": "a"}}}
    (tmp_path / "f.toml").write_bytes(tomli_w.dumps(doc).encode())
    run = central.start_run(load_federation(tmp_path / "f.toml"), "r1")
    assert run.exchange.url == "memory://council/r1"
    run.exchange.put(run.exchange.status(1, "A"), b"{}")
    assert Exchange("memory://council/r1").exists(run.exchange.status(1, "A"))

    doc["federation"]["exchange"] = "shared/exchange"  # a folder: made absolute, the same for every market
    (tmp_path / "f.toml").write_bytes(tomli_w.dumps(doc).encode())
    monkeypatch.chdir(tmp_path)
    run = central.start_run(load_federation(tmp_path / "f.toml"), "r2")
    assert run.exchange.url == str(tmp_path / "shared" / "exchange" / "r2")
