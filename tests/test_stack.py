"""fedpipe.stack's process handling: a killed agent takes its flow runs with it; stop leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedpipe.stack import descendants, free_port, kill_tree, prefect_env, stop

# A parent that starts a child in its own session, as a Prefect worker starts a flow run.
PARENT = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], "
          "start_new_session=True); time.sleep(600)")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def _parent_with_child() -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-c", PARENT])
    deadline = time.monotonic() + 30
    while not descendants(proc.pid):
        assert time.monotonic() < deadline, "child never started"
        time.sleep(0.1)
    return proc, descendants(proc.pid)[0]


@pytest.mark.parametrize("end", [kill_tree, stop])
def test_ending_an_agent_ends_its_flow_runs(end):
    proc, child = _parent_with_child()
    end(proc)
    time.sleep(0.2)
    assert proc.poll() is not None and not _alive(child)


def test_prefect_env_is_private(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_PROFILE", "someones-own")
    env = prefect_env(tmp_path, "http://127.0.0.1:1/api", "postgresql+asyncpg://u:p@h/db")
    assert env["PREFECT_HOME"] == str(tmp_path) and "PREFECT_PROFILE" not in env
    assert env["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert 1024 < free_port() < 65536


def test_centre_federation_gets_its_own_keys_and_absolute_market_paths(tmp_path, monkeypatch):
    from fedpipe.config import load_federation
    from fedpipe.stack import centre_federation

    monkeypatch.chdir(tmp_path)
    demo = Path(__file__).resolve().parents[1] / "federations" / "cmapss.toml"
    copy = load_federation(centre_federation(demo, tmp_path / "up" / "centre" / "federation.toml"))
    original = load_federation(demo)
    assert copy.keys_dir == tmp_path / "up" / "centre" / "centre-keys" != original.keys_dir
    assert {m: c.data for m, c in copy.markets.items()} == {m: c.data for m, c in original.markets.items()}
    assert (copy.name, copy.rounds, copy.model, copy.runs_dir) == (original.name, original.rounds, original.model,
                                                                   original.runs_dir)
