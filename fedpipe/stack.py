"""A whole deployed federation on one machine: a Prefect server and one agent per market, each its own process.

Used by ``fedpipe up`` (the local demo of the deployed mode) and by the end-to-end tests. Each market agent gets
its own site file (fedpipe.site) pointing at its own data, state and keys, as it would on its own machine.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from fedpipe.config import FederationConfig
from fedpipe.site import SiteConfig, load_site, share_public_keys, write_site


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prefect_env(home: Path, api_url: str, database_url: str | None = None, poll_s: float = 5) -> dict[str, str]:
    """Environment for the server, the CLI and the agents: a private PREFECT_HOME, never the user's profile."""
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": api_url,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_WORKER_QUERY_SECONDS": str(poll_s),
           "PREFECT_WORKER_PREFETCH_SECONDS": "2", "PYTHONUNBUFFERED": "1",
           # SQLite serialises writers: under load a request can meet "database is locked" (an HTTP 500).
           # Let clients retry it with Prefect's back-off, and let the server wait longer for the lock.
           "PREFECT_CLIENT_RETRY_EXTRA_CODES": "500", "PREFECT_SERVER_DATABASE_TIMEOUT": "30"}
    env.pop("PREFECT_PROFILE", None)
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    return env


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc): a worker's flow runs live in their own sessions."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Kill a process and everything it started (what a machine going down does to an agent)."""
    for pid in [proc.pid, *descendants(proc.pid)]:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)


def stop(proc: subprocess.Popen, grace_s: float = 10) -> None:
    """Ask a process (and its flow runs) to stop, then kill what is left."""
    if proc.poll() is not None:
        return
    below = descendants(proc.pid)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
    for pid in below:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_healthy(api_url: str, timeout_s: float = 180, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"Prefect server exited with code {proc.returncode}")
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"Prefect server at {api_url} not healthy after {timeout_s:.0f} s")


@dataclass
class Stack:
    """A Prefect server plus agents, with their logs under ``root/logs``."""

    root: Path
    port: int
    database_url: str | None = None
    poll_s: float = 2
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return prefect_env(self.root / "prefect", self.api_url, self.database_url, self.poll_s)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        logs = self.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(argv, env=env or self.env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.processes[name] = proc
        return proc

    def start_server(self, timeout_s: float = 180) -> None:
        proc = self._spawn("server", [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                      "--port", str(self.port), "--analytics-off"])
        wait_healthy(self.api_url, timeout_s, proc)

    def fedpipe(self, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess:
        """Run a ``fedpipe`` command against this server (e.g. ``deploy``), raising with its output on failure."""
        done = subprocess.run([sys.executable, "-m", "fedpipe.cli", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout_s)
        if done.returncode != 0:
            raise RuntimeError(f"fedpipe {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def start_agent(self, market: str, site: Path) -> subprocess.Popen:
        return self._spawn(f"agent-{market}", [sys.executable, "-m", "fedpipe.cli", "agent", "--market", market,
                                               "--site", str(site)])

    def start_central_agent(self) -> subprocess.Popen:
        return self._spawn("agent-central", [sys.executable, "-m", "fedpipe.cli", "agent", "--central"])

    def stop_all(self) -> None:
        for name in reversed(list(self.processes)):  # agents first, the server last
            stop(self.processes.pop(name))


def centre_federation(config: Path, dest: Path) -> Path:
    """A copy of a federation file for a deployed run on this machine, with the centre's own keys folder.

    Market paths become absolute (the copy lives elsewhere); the centre gets ``keys_dir`` next to the copy, so the
    markets' agents and the embedded demo (whose shared key folder also holds market keys) never mix identities.
    """
    import tomllib

    import tomli_w

    from fedpipe.config import load_federation

    federation = load_federation(config)
    raw = tomllib.loads(Path(config).read_text(encoding="utf-8"))
    raw["federation"].update(keys_dir=str(dest.parent / "centre-keys"), runs_dir=str(federation.runs_dir))
    for market, cfg in federation.markets.items():
        raw["markets"][market]["data"] = str(cfg.data)
        if cfg.state is not None:
            raw["markets"][market]["state"] = str(cfg.state)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(tomli_w.dumps(raw).encode())
    load_federation(dest)  # still valid
    return dest


def local_sites(federation: FederationConfig, root: Path, data: dict[str, Path] | None = None,
                **extra: dict) -> dict[str, SiteConfig]:
    """Write one site file per market under ``root/sites/<market>/`` and introduce the parties' public keys.

    ``data`` overrides a market's data folder (default: the folder the federation file names); ``extra`` maps a
    market to more site fields (e.g. a fault to inject).
    """
    sites = {}
    for market, cfg in federation.markets.items():
        home = root / "sites" / market
        path = write_site(home / "site.toml", market, (data or {}).get(market, cfg.data), home / "state",
                          home / "keys", federation.source, **extra.get(market, {}))
        sites[market] = load_site(path)
    share_public_keys(federation.keys_dir, list(sites.values()))
    return sites
