"""How a round's markets train, per strategy. The round flow calls ``collect_updates`` and reads on as before.

- ``bagging``: every market's ``market-train`` flow, one after another (see flows/dispatch.py).
- ``cyclic``: the same flows, each starting from the model the previous market left (a signed visit model).
- ``histogram``: the centre starts XGBoost's federated server; every market's ``market-train-histogram`` flow
  runs at once, each in its own process (embedded) or on its market's agent (deployments); the server stops when
  they are done.
- ``fedavg``: every market's ``market-train-fedavg`` flow sends weights, not trees (flows/fedavg.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from prefect import get_run_logger
from prefect.settings import PREFECT_API_URL

from fedpipe.strategies.cyclic import visiting_order
from flows.dispatch import run_market_flows as run_subflows
from flows.fedavg import train_fedavg
from flows.histogram import market_join_histogram, market_train_histogram
from flows.market import market_train
from tasks.central import aggregate_updates, leave_out, open_updates, publish_visit_model
from tasks.histogram import prepare_tls, sign_tls_requests, start_federated_server, stop_federated_server



def collect_updates(federation, run_market_flows, markets: list[str], run, round_: int, global_doc: dict | None,
                    parent: str, config: str) -> tuple[dict[str, dict], dict[str, str]]:
    """The round's opened and checked updates: (payloads by market, reasons for the markets left out)."""
    if federation.strategy == "fedavg":  # weights, not trees; masked sums with secure aggregation
        return train_fedavg(run_market_flows, config, run, round_, parent, global_doc, markets)
    parents = train_markets(federation, run_market_flows, markets, run, round_, global_doc, parent, config)
    return open_updates(run, round_, parents, global_doc)


def train_markets(federation, run_market_flows, markets: list[str], run, round_: int, global_doc: dict | None,
                  parent: str, config: str) -> str | dict[str, str]:
    """Ask the markets for the round's update, as the federation's strategy says.

    Returns the model hash each market's update must name as its parent: ``parent`` itself, or one per market
    when they started from different models (cyclic).
    """
    params = dict(config=config, round_=round_, exchange=run.exchange.url)
    if federation.strategy == "histogram":
        histogram_round(federation, run_market_flows, markets, **params)
    elif federation.strategy == "cyclic":
        return cyclic_round(federation, run_market_flows, markets, run, global_doc, parent, **params)
    else:
        run_market_flows(market_train, markets, federation.market_timeout_s, **params)
    return parent


def cyclic_round(federation, run_market_flows, markets: list[str], run, global_doc: dict | None, parent: str,
                 **params) -> dict[str, str]:
    """The model visits the markets in turn; after each good update the centre posts the grown model for the next.

    A market whose update is missing or rejected is skipped: the next one starts where the last good one left off.
    """
    logger = get_run_logger()
    doc, parents, visits = global_doc, {}, 0
    for market in visiting_order(markets):
        parents[market] = parent
        run_market_flows(market_train, [market], federation.market_timeout_s, visits=visits, **params)
        payloads, dropped = open_updates(run, params["round_"], {market: parent}, doc, markets=[market])
        if market not in payloads:  # out for the round: a late update must not join trees fitted without it
            leave_out(run, params["round_"], market, dropped.get(market, "no update delivered"))
            logger.warning("round %d: cyclic visit of %s skipped: %s", params["round_"], market, dropped.get(market))
            continue
        doc = aggregate_updates(doc, payloads, 1, params["round_"], "cyclic")
        visits += 1
        parent = publish_visit_model(run, params["round_"], visits, doc)
        logger.info("round %d: visit %d, %s added its trees", params["round_"], visits, market)
    return parents


def histogram_round(federation, run_market_flows, markets: list[str], *, config: str, round_: int,
                    exchange: str) -> None:
    logger = get_run_logger()
    host = os.environ.get("FEDPIPE_HISTOGRAM_HOST") or federation.histogram_host  # markets dial it; loopback default
    tls = prepare_tls(federation, exchange, round_, host)  # CA and server key stay at the centre
    # each market checks its data, makes its own TLS key and posts a signed CSR; one without a valid request sits
    # the round out (the collective would wait for it until the timeout)
    run_market_flows(market_join_histogram, markets, federation.market_timeout_s, config=config, round_=round_,
                     exchange=exchange)
    markets = sign_tls_requests(federation, exchange, round_, markets, tls)
    if len(markets) < federation.quorum:  # too few could dial: the round's quorum check says why
        logger.warning("round %d: only %d market(s) hold a TLS certificate; no collective", round_, len(markets))
        return
    server, port = start_federated_server(len(markets), tls, federation.market_timeout_s)
    logger.info("round %d: federated server on port %d (mutual TLS), %d markets joining", round_, port, len(markets))
    params = dict(config=config, round_=round_, exchange=exchange, address=f"{host}:{port}",
                  collective=markets)
    try:
        if run_market_flows is run_subflows:  # embedded: XGBoost's communicator is per process, so one each
            run_market_processes(markets, federation.market_timeout_s, **params)
        else:  # on the markets' agents: every flow run is already its own process, next to its market's data
            run_market_flows(market_train_histogram, markets, federation.market_timeout_s, **params)
    finally:
        stop_federated_server(server)


def current_api_url() -> str | None:
    """The Prefect API this flow reports to: the configured one, or the temporary server `fedpipe run` started.

    Prefect leaves PREFECT_API_URL unset in embedded mode; without this, each market process would start a
    temporary server of its own (slow, and the runs would not show in the same place)."""
    if PREFECT_API_URL.value():
        return PREFECT_API_URL.value()
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the process's one temporary server (Prefect keeps a single instance)
    return server.api_url if server.running else None


def run_market_processes(markets: list[str], timeout_s: float, **params) -> dict[str, int | None]:
    """One ``market-train-histogram`` flow per market, each in its own process, all at once; exit codes back."""
    logger = get_run_logger()
    env = dict(os.environ)
    api_url = current_api_url()
    if api_url:
        env["PREFECT_API_URL"] = api_url  # the runs show in the same Prefect API, and start no server of their own
    procs = {market: subprocess.Popen(
        [sys.executable, "-m", "flows.histogram", json.dumps({**params, "market": market})], env=env)
        for market in markets}
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
