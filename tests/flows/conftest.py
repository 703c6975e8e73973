"""Flow tests share one temporary Prefect API (it takes ~20 s to start) and a per-test federation builder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import tomli_w

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "usecases" / "predictive_maintenance" / "data"


@pytest.fixture(scope="session", autouse=True)
def prefect_api():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def federation(tmp_path):
    """Write a federation over copies of the vendored markets; returns (config path, market folders)."""

    def build(markets=("FD001", "FD002", "FD003", "FD004"), rounds=1, trees=3, quorum=3, subsample=0.2,
              usecase=None, **extra):
        folders = {}
        for name in markets:
            folders[name] = tmp_path / "markets" / name / "data"
            shutil.copytree(DATA / name, folders[name])
        doc = {
            "federation": {"name": "test-fed", "usecase": "predictive_maintenance", "rounds": rounds,
                           "trees_per_round": trees, "quorum": quorum, "runs_dir": str(tmp_path / "runs"),
                           "keys_dir": str(tmp_path / "keys"), **extra},
            "model": {"max_depth": 4, "eta": 0.3, "base_score": 0.5},
            "markets": {name: {"data": str(folder), "subsample": subsample,
                               "state": str(tmp_path / "markets" / name / "state")}
                        for name, folder in folders.items()},
        }
        if usecase:
            doc["usecase"] = usecase  # e.g. {"task": "rul"}
        path = tmp_path / "federation.toml"
        path.write_bytes(tomli_w.dumps(doc).encode())
        return path, folders

    return build
