"""How a round's markets train, per strategy. The round flow calls ``train_markets`` and reads on as before.

- ``bagging``: every market's ``market-train`` flow, one after another (see flows/dispatch.py).
- ``histogram``: the centre starts XGBoost's federated server; every market's ``market-train-histogram`` flow
  runs at once, each in its own process; the server stops when they are done.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from prefect import get_run_logger
from prefect.settings import PREFECT_API_URL

from flows.market import market_train
from tasks.histogram import prepare_tls, start_federated_server, stop_federated_server

HISTOGRAM_HOST = os.environ.get("FEDPIPE_HISTOGRAM_HOST", "127.0.0.1")  # markets dial this; loopback by default


def train_markets(federation, run_market_flows, markets: list[str], **params) -> None:
    """Ask the markets for the round's trees, as the federation's strategy says."""
    if federation.strategy == "histogram":
        return histogram_round(federation, markets, **params)
    run_market_flows(market_train, markets, federation.market_timeout_s, **params)


def histogram_round(federation, markets: list[str], *, config: str, round_: int, exchange: str) -> None:
    logger = get_run_logger()
    tls = prepare_tls(federation, markets, HISTOGRAM_HOST)
    server, port = start_federated_server(len(markets), tls, federation.market_timeout_s)
    logger.info("round %d: federated server on port %d (mutual TLS), %d markets joining", round_, port, len(markets))
    try:
        run_market_processes(markets, federation.market_timeout_s, config=config, round_=round_,
                             exchange=exchange, address=f"{HISTOGRAM_HOST}:{port}", world_size=len(markets),
                             tls_dir=str(tls.folder))
    finally:
        stop_federated_server(server)


def run_market_processes(markets: list[str], timeout_s: float, **params) -> dict[str, int | None]:
    """One ``market-train-histogram`` flow per market, each in its own process, all at once; exit codes back."""
    logger = get_run_logger()
    env = dict(os.environ)
    if PREFECT_API_URL.value():
        env["PREFECT_API_URL"] = PREFECT_API_URL.value()  # the runs show in the same Prefect API
    procs = {market: subprocess.Popen(
        [sys.executable, "-m", "flows.histogram", json.dumps({**params, "market": market, "rank": rank})], env=env)
        for rank, market in enumerate(markets)}
    deadline = time.monotonic() + timeout_s
    codes = {}
    for market, proc in procs.items():
        try:
            codes[market] = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes[market] = proc.wait()
            logger.warning("%s: histogram training did not finish within %.0f s; stopped", market, timeout_s)
        if codes[market] != 0:
            logger.warning("%s: market-train-histogram exited with code %s", market, codes[market])
    return codes


def check_strategy(strategy: str) -> str:
    """The strategy, if the round flow runs it; a clear error otherwise (and before any market trains)."""
    from fedpipe.config import STRATEGIES

    if strategy not in STRATEGIES:
        raise ValueError(f"strategy '{strategy}' is not one the round flow runs (choose from {', '.join(STRATEGIES)})")
    if strategy == "histogram":
        from fedpipe.strategies.histogram import require_federated_plugin

        require_federated_plugin()
    return strategy
