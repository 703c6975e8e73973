"""How the round flow reaches the markets.

Embedded default: each market flow runs as a subflow in this process (what `make demo` does). The market flow
still reads only its own folder, and hands back nothing but envelopes in the exchange.
"""

from __future__ import annotations

from typing import Callable

from prefect import Flow, get_run_logger
from prefect.states import State


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
