"""Deployed mode: work pools, deployments, and market flow runs on the markets' own agents.

``fedpipe deploy`` creates one process work pool per market (``market-<name>``) and one for the centre
(``fedpipe-central``), the round flow's deployment (with the federation's cadence as a cron schedule) and each
market's ``market-train``/``market-evaluate`` deployments on its pool. A market's agent is a Prefect worker on its
pool; it runs the market flow next to the data, with paths and keys from its own site file (fedpipe.site).

The round flow reaches the markets through :func:`run_market_deployments`: it starts one flow run per market and
waits at most ``market_timeout_s``; a run still going then is cancelled and the market is left out with the reason.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from prefect import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.states import Cancelled, Cancelling

from fedpipe.config import FederationConfig
from fedpipe.storage import Exchange

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
CENTRAL_POOL = "fedpipe-central"
# Market flows whose status note decides whether the market takes part (describe and fedavg's scaler: round 0;
# train: its round).
STATUS_FLOWS = ("market-describe", "market-train", "market-scaler", "market-train-fedavg")
ROUND_FLOW = ("federated-training", "flows/round.py:federated_training")


def market_pool(market: str) -> str:
    return f"market-{market}"


def market_deployment(flow_name: str, federation: str, market: str) -> str:
    """The full name (``flow/deployment``) of a market's deployment of ``flow_name``."""
    return f"{flow_name}/{federation}-{market}"


def market_flows(source: Path = REPO) -> dict[str, str]:
    """Every flow in ``flows/`` that runs at a market (it takes a ``market`` parameter): name -> entrypoint."""
    import importlib
    import inspect

    from prefect import Flow

    found = {}
    for module_file in sorted((source / "flows").glob("*.py")):
        module = importlib.import_module(f"flows.{module_file.stem}")
        for attr, obj in vars(module).items():
            if isinstance(obj, Flow) and obj.__module__ == module.__name__ \
                    and "market" in inspect.signature(obj.fn).parameters:
                found[obj.name] = f"flows/{module_file.name}:{attr}"
    return found


def ensure_work_pools(names: list[str]) -> list[str]:
    """Create the process work pools that do not exist yet; return the names created."""
    created = []
    with get_client(sync_client=True) as client:
        for name in names:
            try:
                client.create_work_pool(WorkPoolCreate(name=name, type="process"))
                created.append(name)
            except ObjectAlreadyExists:
                continue
    return created


def deploy_federation(federation: FederationConfig, config: Path, source: Path = REPO) -> dict[str, UUID]:
    """Create or update the federation's work pools and deployments (idempotent); return deployment ids by name.

    Code comes from ``source`` (a local folder, the checkout every machine has); the round deployment's defaults
    are this federation file and ``dispatch="deployments"``, all editable in the UI's custom run form.
    """
    from prefect import Flow

    pools = [CENTRAL_POOL, *(market_pool(m) for m in federation.markets)]
    for name in ensure_work_pools(pools):
        log.info("created work pool %s", name)
    ids: dict[str, UUID] = {}
    flow_name, entrypoint = ROUND_FLOW
    round_flow = Flow.from_source(source=str(source), entrypoint=entrypoint)
    ids[f"{flow_name}/{federation.name}"] = round_flow.to_deployment(
        name=federation.name, work_pool_name=CENTRAL_POOL, cron=federation.cadence,
        parameters={"config": str(Path(config).resolve()), "dispatch": "deployments"},
        description=f"Federated rounds of '{federation.name}' (cadence: {federation.cadence or 'none, runs on demand'})",
        tags=["fedpipe", federation.name],
    ).apply()  # replaces the schedule: a cadence removed from the file is removed here
    for flow_name, entrypoint in market_flows(source).items():
        market_flow = Flow.from_source(source=str(source), entrypoint=entrypoint)
        for market in federation.markets:
            full = market_deployment(flow_name, federation.name, market)
            ids[full] = market_flow.to_deployment(
                name=full.split("/", 1)[1], work_pool_name=market_pool(market), parameters={"market": market},
                tags=["fedpipe", federation.name, market],
                description=f"{flow_name} of market {market}: runs on that market's own agent",
            ).apply()
    return ids


@dataclass
class MarketRun:
    market: str
    flow_run_id: UUID | None  # None: no run could be started
    state: str = "SCHEDULED"
    message: str = ""
    timed_out: bool = False


def run_market_deployments(flow_name: str, federation: str, markets: list[str], timeout_s: float,
                           poll_s: float = 2.0, **params) -> dict[str, MarketRun]:
    """Start ``flow_name`` on every market's agent and wait for all of them, at most ``timeout_s`` in all.

    Must be called inside a flow (runs show as its subflows). A run not finished by then (its agent is down, it
    hangs, or it was killed mid-run) is cancelled and reported with ``timed_out``; the caller decides what that
    means for the round. Returns each market's final state name and message.
    """
    from prefect.deployments import run_deployment

    runs, pending = {}, set()
    for market in markets:
        name = market_deployment(flow_name, federation, market)
        try:
            flow_run = run_deployment(name, timeout=0, parameters={"market": market, **params})
        except ObjectNotFound:
            runs[market] = MarketRun(market, None, "FAILED", f"no deployment {name}: run `fedpipe deploy` again")
            continue
        runs[market] = MarketRun(market, flow_run.id)
        pending.add(market)
    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while pending:
            for market in sorted(pending):
                state = client.read_flow_run(runs[market].flow_run_id).state
                runs[market].state, runs[market].message = state.type.value, state.message or ""
                if state.is_final():
                    pending.discard(market)
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(poll_s)
        for market in sorted(pending):
            run = runs[market]
            run.timed_out = True
            # A run no agent has picked up can be cancelled outright; a running one is stopped by its agent.
            stop = Cancelled if run.state in ("SCHEDULED", "PENDING") else Cancelling
            client.set_flow_run_state(run.flow_run_id, stop(message=f"timed out after {timeout_s:g} s"), force=True)
            run.message = f"{flow_name} did not finish within {timeout_s:g} s (was {run.state}); cancelled"
    return runs


def record_dropped(exchange: str, round_: int, runs: dict[str, MarketRun]) -> dict[str, str]:
    """For each market run that failed or timed out, leave the centre a status note with the reason.

    A timed-out market's update is withdrawn even if it lands late, so the round is decided on what arrived in
    time. A market that failed on its own already wrote its note (naming file and field); that one is kept.
    """
    store = Exchange(exchange)
    reasons = {}
    for market, run in runs.items():
        if run.state == "COMPLETED" and not run.timed_out:
            continue
        status = store.status(round_, market)
        if not run.timed_out and store.exists(status):
            reasons[market] = json.loads(store.get(status)).get("reason", run.message)
            continue
        reason = run.message if run.timed_out else f"market flow run ended {run.state}: {run.message}"
        note = json.dumps({"market": market, "round": round_, "status": "dropped", "reason": reason}).encode()
        # The decision first: a run the kill or cancel has not yet stopped may still post its update or its own
        # status note after this; the centre goes by the drop note, whatever lands later.
        store.put(store.dropped(round_, market), note)
        store.remove(store.update(round_, market))
        store.put(status, note)
        reasons[market] = reason
    return reasons
