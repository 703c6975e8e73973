"""The model registry: versions, aliases, the council's promote/rollback, locking and failed writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import tomli_w

from fedpipe import registry as reg
from fedpipe.cli import main
from fedpipe.registry import Registry, RegistryError

PASSED = {"passed": True, "summary": "no market worse off", "metric": "log_loss", "tolerance": 0.01, "markets": {}}
BLOCKED = {"passed": False, "summary": "blocked by B (log_loss worse by 0.02)", "metric": "log_loss",
           "tolerance": 0.01, "markets": {}}


def _lineage(n: int) -> dict:
    return {"run_id": f"run-{n}", "round": 3, "model_sha256": f"{n:064x}", "markets": {"A": {}, "B": {}}}


def _add(registry: Registry, n: int) -> int:
    return registry.add(json.dumps({"model": n}).encode(), _lineage(n))


def test_versions_aliases_gate_promote_rollback(tmp_path):
    registry = Registry(tmp_path, "fed")
    assert _add(registry, 1) == 1 and registry.decide(1, PASSED) == "champion"
    assert _add(registry, 2) == 2 and registry.decide(2, BLOCKED) == "challenger"
    assert registry.aliases() == {"champion": 1, "challenger": 2}
    assert registry.load("challenger", "gate.json")["summary"].startswith("blocked by B")
    assert registry.load(2, "model.json") == b'{"model": 2}'

    assert registry.promote("challenger", "council reviewed B's loss") == 2
    assert registry.aliases() == {"champion": 2, "challenger": None}
    assert registry.rollback("B complained") == 1
    assert registry.aliases() == {"champion": 1, "challenger": 2}
    assert registry.entry(2)["status"] == "rolled back"
    with pytest.raises(RegistryError, match="no earlier champion"):
        registry.rollback("again")
    with pytest.raises(RegistryError, match="no version 9"):
        registry.resolve("v9")
    events = [e["event"] for e in registry.read()["events"]]
    assert events == ["registered", "champion", "registered", "challenger", "champion", "rollback"]


WRITER = """
import json, sys
from fedpipe.registry import Registry
root, start = sys.argv[1], int(sys.argv[2])
registry = Registry(root, "fed")
for n in range(start, start + 5):
    lineage = {"run_id": f"run-{n}", "round": 3, "model_sha256": f"{n:064x}", "markets": {"A": {}, "B": {}}}
    registry.add(json.dumps({"model": n}).encode(), lineage)
"""


def test_concurrent_writers_lose_nothing(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(start)]) for start in (100, 200, 300)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    versions = Registry(tmp_path, "fed").versions()
    assert sorted(v["version"] for v in versions) == list(range(1, 16))
    assert sorted(v["run_id"] for v in versions) == sorted(f"run-{n}" for s in (100, 200, 300) for n in range(s, s + 5))
    for v in versions:  # each version folder holds the model its index entry names
        model = json.loads((tmp_path / "fed" / f"v{v['version']:04d}" / "model.json").read_text())
        assert v["run_id"] == f"run-{model['model']}"


def test_a_write_that_dies_midway_leaves_the_registry_as_it_was(tmp_path, monkeypatch):
    registry = Registry(tmp_path, "fed")
    _add(registry, 1)
    registry.decide(1, PASSED)
    before = registry.index_path.read_bytes()

    def crash(*args, **kwargs):  # the disk fails when the version folder is moved into place
        raise OSError("disk full")

    monkeypatch.setattr(reg.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        _add(registry, 2)
    monkeypatch.undo()
    assert registry.index_path.read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "fed").iterdir()) == [".lock", "registry.json", "v0001"]
    assert _add(registry, 3) == 2  # and the registry goes on


def test_a_held_lock_times_out_with_a_clear_error(tmp_path):
    import fcntl

    registry = Registry(tmp_path, "fed", lock_timeout_s=0.3)
    _add(registry, 1)
    with open(tmp_path / "fed" / ".lock", "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        other = os.fork()
        if other == 0:  # a second process: the lock is per open file, so try from a child
            try:
                _add(registry, 2)
            except RegistryError as exc:
                os._exit(3 if "locked by another writer" in str(exc) else 1)
            os._exit(0)
        _, status = os.waitpid(other, 0)
    assert os.waitstatus_to_exitcode(status) == 3
    assert [v["version"] for v in registry.versions()] == [1]


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "fed.toml"
    path.write_bytes(tomli_w.dumps({
        "federation": {"name": "fed", "usecase": "predictive_maintenance", "quorum": 1},
        "model": {"base_score": 0.5},
        "registry": {"dir": str(tmp_path / "reg"), "tolerance": 0.02},
        "markets": {"A": {"data": "a"}},
    }).encode())
    registry = Registry(tmp_path / "reg", "fed")
    for n, verdict in ((1, PASSED), (2, BLOCKED)):
        _add(registry, n)
        registry.decide(n, verdict)
        registry.write_file(n, "card.md", f"# Model card v{n}\n".encode())
    return str(path)


def test_cli_models_list_show_promote_rollback(config, capsys):
    assert main(["models", "list", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "| 1 | champion | champion | run-1 | 3 | A, B |" in out and "| 2 | challenger | challenger | run-2 |" in out

    assert main(["models", "show", "--config", config]) == 0
    assert "# Model card v1" in capsys.readouterr().out
    assert main(["models", "show", "challenger", "--gate", "--config", config]) == 0
    assert json.loads(capsys.readouterr().out)["passed"] is False

    assert main(["models", "promote", "2", "--reason", "reviewed", "--config", config]) == 0
    assert "v2 is now champion" in capsys.readouterr().out
    assert main(["models", "rollback", "--reason", "regression in A", "--config", config]) == 0
    assert "v1 is champion again" in capsys.readouterr().out
    assert main(["models", "promote", "7", "--reason", "x", "--config", config]) == 2
    assert "no version 7" in capsys.readouterr().err


def test_registry_config_is_checked(tmp_path):
    from fedpipe.config import load_federation
    from fedpipe.errors import ConfigError

    path = tmp_path / "f.toml"
    path.write_bytes(tomli_w.dumps({"federation": {"name": "f", "usecase": "predictive_maintenance", "quorum": 1},
                                    "model": {"base_score": 0.5}, "registry": {"tolerance": -1},
                                    "markets": {"A": {"data": "a"}}}).encode())
    with pytest.raises(ConfigError, match="registry.tolerance"):
        load_federation(path)
    path.write_bytes(tomli_w.dumps({"federation": {"name": "f", "usecase": "predictive_maintenance", "quorum": 1,
                                                   "runs_dir": str(tmp_path / "r")},
                                    "model": {"base_score": 0.5}, "markets": {"A": {"data": "a"}}}).encode())
    assert load_federation(path).registry.dir == tmp_path / "registry"  # next to runs/ by default
