"""End-to-end: a real `prefect server start`, real agents in their own processes, rounds started over REST.

Slow (every market flow is its own process), so kept to a tiny federation: 10% of engines, 1 round, 2 trees.
Select with ``-m e2e``; they also run in ``make test``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
import tomli_w

from fedpipe.config import load_federation
from fedpipe.stack import Stack, free_port, local_sites
from fedpipe.site import load_site, write_site

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "usecases" / "predictive_maintenance" / "data"
MARKETS = ("FD001", "FD002", "FD003", "FD004")


def _write_federation(root: Path, name: str, **federation) -> Path:
    """The council's federation file. It names no real data folder: only the agents' site files know those."""
    doc = {
        "federation": {"name": "e2e-fed", "usecase": "predictive_maintenance", "rounds": 1, "trees_per_round": 2,
                       "quorum": 3, "market_timeout_s": 300, "runs_dir": str(root / "centre" / "runs"),
                       "keys_dir": str(root / "centre" / "keys"), "exchange": str(root / "exchange"), **federation},
        "model": {"max_depth": 3, "eta": 0.3, "base_score": 0.5},
        "markets": {m: {"data": f"/nonexistent/known-only-to-{m}", "subsample": 0.1} for m in MARKETS},
    }
    path = root / "centre" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tomli_w.dumps(doc).encode())
    return path


@pytest.fixture
def write_federation():
    """Write another federation file for the same markets (e.g. a lower quorum): (root, name, **fields) -> path."""
    return _write_federation


class Deployed:
    """A running stack: server, centre agent and four market agents, plus REST helpers as the UI uses them."""

    def __init__(self, root: Path, stack: Stack, config: Path, sites: dict):
        self.root, self.stack, self.config, self.sites = root, stack, config, sites
        self.http = httpx.Client(base_url=stack.api_url, timeout=30)

    def _call(self, method: str, url: str, **kwargs) -> httpx.Response:
        """A REST call as the UI makes it; a 500 from SQLite's "database is locked" is retried, as the UI would."""
        for attempt in range(5):
            response = self.http.request(method, url, **kwargs)
            if response.status_code != 500:
                break
            time.sleep(2 * (attempt + 1))
        return response

    def deployment_id(self, name: str) -> str:
        response = self._call("GET", f"/deployments/name/{name}")
        response.raise_for_status()
        return response.json()["id"]

    def start_round(self, **parameters) -> str:
        """What the UI's "Run → Custom run" does: POST create_flow_run on the deployment with parameters."""
        deployment = self.deployment_id("federated-training/e2e-fed")
        response = self._call("POST", f"/deployments/{deployment}/create_flow_run", json={"parameters": parameters})
        response.raise_for_status()
        return response.json()["id"]

    def flow_run(self, flow_run_id: str) -> dict:
        response = self._call("GET", f"/flow_runs/{flow_run_id}")
        response.raise_for_status()
        return response.json()

    def wait(self, flow_run_id: str, timeout_s: float = 900) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            run = self.flow_run(flow_run_id)
            if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                return run
            time.sleep(2)
        raise TimeoutError(f"flow run {flow_run_id} not finished after {timeout_s} s; logs in {self.stack.root}/logs")

    def children(self, parent_id: str) -> list[dict]:
        """The market flow runs a round started (subflows of the round run)."""
        body = {"flow_runs": {"parent_flow_run_id": {"any_": [parent_id]}}, "limit": 200}
        response = self._call("POST", "/flow_runs/filter", json=body)
        response.raise_for_status()
        return response.json()

    def artifacts(self, key: str) -> list[dict]:
        body = {"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 50}
        response = self._call("POST", "/artifacts/filter", json=body)
        response.raise_for_status()
        return response.json()


def _start(root: Path, database_url: str | None) -> Deployed:
    stack = Stack(root / "stack", free_port(), database_url)
    stack.start_server()
    config = _write_federation(root, "federation.toml")
    stack.fedpipe("deploy", "--config", str(config))
    folders = {}
    for market in MARKETS:  # each market's own copy, as if on its own machine
        folders[market] = root / "markets" / market / "data"
        shutil.copytree(DATA / market, folders[market])
    sites = local_sites(load_federation(config), root / "markets", data=folders)
    for market, site in sites.items():  # each agent reads its own copy, whose centre-side folders do not exist there
        copy = _write_federation(root / "markets" / market, "federation.toml", keys_dir="/nonexistent/centre-keys",
                                 runs_dir="/nonexistent/centre-runs", exchange="/nonexistent/exchange")
        write_site(site.source, market, site.data, site.state, site.keys_dir, copy)
        sites[market] = load_site(site.source)
    stack.start_central_agent()
    for market, site in sites.items():
        stack.start_agent(market, site.source)
    return Deployed(root, stack, config, sites)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """The stack on Prefect's default database, SQLite."""
    app = _start(tmp_path_factory.mktemp("e2e-sqlite"), None)
    yield app
    app.stack.stop_all()


def _psql(sql: str, db: str = "postgres") -> str:
    done = subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-d", db, "-v", "ON_ERROR_STOP=1", "-tAc", sql],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"psql failed: {done.stderr}")
    return done.stdout.strip()


@pytest.fixture(scope="module")
def postgres_url():
    """A fresh database and role on the local PostgreSQL 15 (.ci/run starts it; started here too if down)."""
    if shutil.which("pg_ctlcluster") is None:
        pytest.fail("PostgreSQL 15 is not installed (apt-get install postgresql-15); .ci/run expects it")
    subprocess.run(["pg_ctlcluster", "15", "main", "start"], capture_output=True)  # no-op when already running
    name = f"fedpipe_e2e_{uuid.uuid4().hex[:8]}"
    _psql(f"CREATE ROLE {name} LOGIN PASSWORD '{name}'")
    _psql(f"CREATE DATABASE {name} OWNER {name}")
    yield f"postgresql+asyncpg://{name}:{name}@127.0.0.1:5432/{name}"
    _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    _psql(f"DROP ROLE IF EXISTS {name}")


@pytest.fixture(scope="module")
def deployed_pg(tmp_path_factory, postgres_url):
    """The same stack with the server on PostgreSQL, as production would run it."""
    app = _start(tmp_path_factory.mktemp("e2e-postgres"), postgres_url)
    yield app
    app.stack.stop_all()
