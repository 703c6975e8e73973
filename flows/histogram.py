"""A market's part in a histogram round: asking to join, then the same story as market-train, joined to the
federation's collective.

``market-join-histogram`` runs like any market flow (as a subflow, or on the market's agent): it checks the
market's data against the contract first (the collective waits for every member, so a market with bad data must
stay out of it rather than stall it), then keeps the market's TLS key and certificate, or makes a new key here and
asks the centre to sign a CSR. The private key never leaves.

XGBoost's communicator is process-global, so the round flow starts ``market-train-histogram`` once per market,
each in its own process (``python -m flows.histogram ...``), all at once; each run reports to the same Prefect API.
"""

from __future__ import annotations

import argparse
import json

from prefect import flow, get_run_logger

from fedpipe.strategies.histogram import communicator_args
from flows.market import _site
from tasks.histogram import fetch_tls_ca, load_client_tls, request_tls_certificate, train_histogram_update
from tasks.market import (fetch_global_model, load_market_data, publish, report_status, seal_update, sit_out,
                          validate_market_data)


@flow(name="market-join-histogram", flow_run_name="{market}: join the histogram collective, round {round_}")
def market_join_histogram(config: str, market: str, round_: int, exchange: str) -> str:
    """Validate the local data, check the round's CA, then keep this market's certificate or post a CSR signed
    with its identity. A market that fails here posts no request, so the collective forms without it."""
    site = _site(config, market, exchange)
    try:
        validate_market_data(site, load_market_data(site))
        ca_pem = fetch_tls_ca(site, round_)
        outcome = request_tls_certificate(site, round_, ca_pem)
    except Exception as exc:
        raise sit_out(site, round_, exc) from None
    get_run_logger().info("%s: TLS certificate %s for round %d", market, outcome, round_)
    return outcome


@flow(name="market-train-histogram", flow_run_name="{market}: train round {round_} (histogram)")
def market_train_histogram(config: str, market: str, round_: int, exchange: str, address: str,
                           collective: list[str]) -> str:
    """Validate the local data, grow the round's trees with the other markets over mutual TLS, seal them.

    ``collective`` is the round's markets in rank order (the same list for every market, so the parameters are
    the same whether the centre starts this flow as a local process or on each market's agent).
    """
    site = _site(config, market, exchange)
    world_size, rank = len(collective), collective.index(market)
    try:
        data = load_market_data(site)
        validation = validate_market_data(site, data)
        global_doc, parent = fetch_global_model(site, round_)
        client = load_client_tls(site, round_)  # own key, issued certificate, CA: checked before dialling
        communicator = communicator_args(address, world_size, rank, client)
        update = train_histogram_update(site, data, global_doc, communicator)
        publish(site, site.exchange.update(round_, market), seal_update(site, round_, parent, update))
    except Exception as exc:
        raise sit_out(site, round_, exc) from None
    report_status(site, round_, "sealed", trees=len(update.model["learner"]["gradient_booster"]["model"]["trees"]),
                  validation=validation)
    get_run_logger().info("%s: sealed the round's %d histogram trees", market, site.federation.trees_per_round)
    return "sealed"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Run one market's histogram training flow (started by the round).")
    parser.add_argument("params", help="the flow's parameters as JSON")
    market_train_histogram(**json.loads(parser.parse_args().params))
