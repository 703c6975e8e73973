"""How the round flow reaches the markets.

Embedded default: each market flow runs as a subflow in this process (what `make demo` does). The market flow
still reads only its own folder, and hands back nothing but envelopes in the exchange.

Deployed: each market flow runs as a deployment run on that market's work pool, picked up by the market's own
agent (`fedpipe agent`), with its data location and keys from that machine's site file.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

from prefect import Flow, get_run_logger
from prefect.states import State

from fedpipe import remote


def run_market_flows(market_flow: Flow, markets: list[str], timeout_s: float, **params) -> dict[str, State]:
    """Run ``market_flow`` once per market; a failing market returns a failed state instead of raising."""
    logger = get_run_logger()
    bounded: Callable = market_flow.with_options(timeout_seconds=timeout_s)
    states = {}
    for market in markets:
        states[market] = bounded(market=market, return_state=True, **params)
        if states[market].is_failed():
            logger.warning("%s: %s failed: %s", market, market_flow.name, states[market].message)
    return states


def run_on_agents(market_flow: Flow, markets: list[str], timeout_s: float, *, federation: str, **params) -> dict:
    """Deployed mode: run ``market_flow`` as a deployment run on each market's own agent (fedpipe.remote).

    A run that fails, or does not finish within ``timeout_s`` (hung, agent killed or offline), is cancelled and
    its market left out of the round with the reason.
    """
    logger = get_run_logger()
    runs = remote.run_market_deployments(market_flow.name, federation, markets, timeout_s, **params)
    if market_flow.name in remote.STATUS_FLOWS:  # the reason goes where the centre looks: the market's status note
        round_ = params.get("round_", 0)
        for market, reason in remote.record_dropped(params["exchange"], round_, runs).items():
            logger.warning("%s: left out (round %d, %s): %s", market, round_, market_flow.name, reason)
    for run in runs.values():
        if run.timed_out or run.state != "COMPLETED":
            logger.warning("%s: %s ended %s: %s", run.market, market_flow.name, run.state, run.message)
    return runs


def market_runner(dispatch: str, federation: str) -> Callable:
    """How this round reaches the markets: "local" subflows, or "deployments" on the markets' agents."""
    if dispatch == "local":
        return run_market_flows
    if dispatch == "deployments":
        return partial(run_on_agents, federation=federation)
    raise ValueError(f"dispatch must be 'local' or 'deployments', got {dispatch!r}")
