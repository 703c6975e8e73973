"""The central round flow: the story of federated training, one round at a time."""

from __future__ import annotations

from prefect import flow, get_run_logger

from fedpipe.config import load_federation
from flows.dispatch import run_market_flows
from flows.market import market_evaluate, market_train
from tasks.central import (aggregate_updates, open_metrics, open_updates, publish_global_model, record_round,
                           start_run, write_summary)
from tasks.reporting import publish_round_artifacts, publish_summary_artifact


@flow(name="federated-training", log_prints=True)
def federated_training(config: str, rounds: int | None = None, run_id: str | None = None) -> str:
    """Train one global model across the federation's markets; return the run folder."""
    logger = get_run_logger()
    federation = load_federation(config)
    rounds = rounds or federation.rounds
    run = start_run(federation, run_id)
    exchange, markets = run.exchange.url, list(federation.markets)
    global_doc, parent = None, ""
    for round_ in range(1, rounds + 1):
        logger.info("round %d/%d: asking %d markets for %d new trees each", round_, rounds, len(markets),
                    federation.trees_per_round)
        run_market_flows(market_train, markets, federation.market_timeout_s,
                         config=config, round_=round_, exchange=exchange)
        payloads, dropped = open_updates(run, round_, parent, global_doc)
        global_doc = aggregate_updates(global_doc, payloads, federation.quorum, round_)
        parent = publish_global_model(run, round_, global_doc)
        run_market_flows(market_evaluate, sorted(payloads), federation.market_timeout_s,
                         config=config, round_=round_, exchange=exchange)
        evaluations, _ = open_metrics(run, round_, parent)
        _, metrics, roi = record_round(run, round_, parent, payloads, dropped, evaluations)
        publish_round_artifacts(federation.name, round_, metrics, roi, dropped)
        logger.info("round %d/%d done: %d contributed, %d left out %s", round_, rounds, len(payloads),
                    len(dropped), dropped or "")
    summary = write_summary(run)
    publish_summary_artifact(federation.name, summary.read_text())
    return str(run.root)
