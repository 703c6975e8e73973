"""fedpipe.storage: atomic files (old or whole new, never torn) and the round-addressed exchange."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from fedpipe import storage
from fedpipe.storage import Exchange, atomic_write_bytes, atomic_write_json, atomic_write_parquet


def _disk_gone(*args, **kwargs):
    raise OSError("disk gone")


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --- atomic writes ------------------------------------------------------------------------------------------


def test_atomic_write_replaces_the_whole_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "deep" / "er" / "model.json"  # parent folders are created
    atomic_write_bytes(path, b"x" * 10_000)
    atomic_write_bytes(path, b"short")
    assert path.read_bytes() == b"short"  # no tail of the longer old file survives
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.json"]


def test_atomic_write_json_is_readable_json(tmp_path):
    path = tmp_path / "rounds.json"
    atomic_write_json(path, [{"round": 1, "sha": "ab"}])
    assert json.loads(path.read_text()) == [{"round": 1, "sha": "ab"}]


@pytest.mark.parametrize("broken", ["replace", "fsync"])
def test_failed_write_keeps_old_file_and_cleans_up(tmp_path, monkeypatch, broken):
    path = tmp_path / "model.json"
    atomic_write_bytes(path, b"old model")
    monkeypatch.setattr(os, broken, _disk_gone)
    with pytest.raises(OSError, match="disk gone"):
        atomic_write_bytes(path, b"new model that never lands")
    monkeypatch.undo()
    assert path.read_bytes() == b"old model"
    assert _leftovers(tmp_path) == []


def test_failed_parquet_write_keeps_old_table(tmp_path, monkeypatch):
    path = tmp_path / "metrics.parquet"
    old = pd.DataFrame({"round": [1], "auc": [0.9]})
    atomic_write_parquet(path, old)
    monkeypatch.setattr(os, "replace", _disk_gone)
    with pytest.raises(OSError, match="disk gone"):
        atomic_write_parquet(path, pd.DataFrame({"round": [1, 2], "auc": [0.9, 0.8]}))
    monkeypatch.undo()
    pd.testing.assert_frame_equal(pd.read_parquet(path), old)
    assert _leftovers(tmp_path) == []


def test_atomic_write_parquet_round_trips(tmp_path):
    path = tmp_path / "roi.parquet"
    frame = pd.DataFrame({"market": ["A", "B"], "savings": [1.5, -2.0]})
    atomic_write_parquet(path, frame)
    atomic_write_parquet(path, frame.iloc[:1])
    pd.testing.assert_frame_equal(pd.read_parquet(path), frame.iloc[:1])
    assert _leftovers(tmp_path) == []


# --- the exchange -------------------------------------------------------------------------------------------


@pytest.fixture(params=["path", "file-url"])
def exchange(request, tmp_path):
    root = tmp_path / "exchange"
    return Exchange(root if request.param == "path" else f"file://{root}")


def test_exchange_paths_per_round_and_market(exchange, tmp_path):
    root = str(tmp_path / "exchange")
    assert exchange.global_model(3) == f"{root}/global/round-003.json"
    assert exchange.update(3, "FD001") == f"{root}/round-003/updates/FD001.sealed"
    assert exchange.metrics(12, "FD002") == f"{root}/round-012/metrics/FD002.sealed"
    assert exchange.status(1, "FD004") == f"{root}/round-001/status/FD004.json"
    assert exchange.update(1, "FD001") != exchange.update(2, "FD001") != exchange.update(2, "FD002")


def test_exchange_put_get_exists_listdir(exchange):
    a, b, note = exchange.update(1, "A"), exchange.update(1, "B"), exchange.status(1, "A")
    assert not exchange.exists(a)
    assert exchange.listdir("round-001") == []  # nothing posted yet: empty, not an error
    exchange.put(a, b"sealed A")
    exchange.put(b, b"sealed B")
    exchange.put(note, b'{"status": "sealed"}')
    exchange.put(exchange.update(2, "A"), b"round 2")
    assert exchange.exists(a) and exchange.get(a) == b"sealed A"
    assert exchange.listdir("round-001/updates") == [a, b]
    assert exchange.listdir("round-001") == sorted([a, b, note])
    assert len(exchange.listdir()) == 4
    exchange.put(a, b"resealed")  # a market may re-post: the slot holds the new bytes only
    assert exchange.get(a) == b"resealed"
    assert not any(p.endswith(".tmp") for p in exchange.listdir())
    exchange.remove(a)
    exchange.remove(a)  # removing what is not there is fine
    assert not exchange.exists(a) and exchange.listdir("round-001/updates") == [b]


def test_exchange_get_of_missing_slot_raises(exchange):
    with pytest.raises(FileNotFoundError):
        exchange.get(exchange.update(1, "A"))


def test_local_exchange_put_is_atomic(tmp_path, monkeypatch):
    ex = Exchange(tmp_path)
    slot = ex.update(1, "A")
    ex.put(slot, b"first")
    monkeypatch.setattr(storage.os, "replace", _disk_gone)
    with pytest.raises(OSError, match="disk gone"):
        ex.put(slot, b"second")
    monkeypatch.undo()
    assert ex.get(slot) == b"first"
    assert ex.listdir("round-001") == [slot]
