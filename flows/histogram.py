"""A market's part in a histogram round: the same story as market-train, joined to the federation's collective.

XGBoost's communicator is process-global, so the round flow starts this flow once per market, each in its own
process (``python -m flows.histogram ...``), all at once; each run reports to the same Prefect API.
"""

from __future__ import annotations

import argparse
import json

from prefect import flow, get_run_logger

from fedpipe.market import describe_failure
from fedpipe.strategies.histogram import communicator_args
from fedpipe.tls import FederationTls
from flows.market import _site
from tasks.histogram import train_histogram_update
from tasks.market import (fetch_global_model, load_market_data, publish, report_status, seal_update,
                          validate_market_data)


@flow(name="market-train-histogram", flow_run_name="{market}: train round {round_} (histogram)")
def market_train_histogram(config: str, market: str, round_: int, exchange: str, address: str, world_size: int,
                           rank: int, tls_dir: str) -> str:
    """Validate the local data, grow the round's trees with the other markets over mutual TLS, seal them."""
    site = _site(config, market, exchange)
    try:
        data = load_market_data(site)
        validation = validate_market_data(site, data)
        global_doc, parent = fetch_global_model(site, round_)
        communicator = communicator_args(address, world_size, rank, FederationTls(tls_dir), market)
        update = train_histogram_update(site, data, global_doc, communicator)
        publish(site, site.exchange.update(round_, market), seal_update(site, round_, parent, update))
    except Exception as exc:
        report_status(site, round_, "excluded", **describe_failure(site, exc))
        raise
    report_status(site, round_, "sealed", trees=len(update.model["learner"]["gradient_booster"]["model"]["trees"]),
                  validation=validation)
    get_run_logger().info("%s: sealed the round's %d histogram trees", market, site.federation.trees_per_round)
    return "sealed"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Run one market's histogram training flow (started by the round).")
    parser.add_argument("params", help="the flow's parameters as JSON")
    market_train_histogram(**json.loads(parser.parse_args().params))
