"""The central round flow: the story of federated training, one round at a time."""

from __future__ import annotations

from prefect import flow, get_run_logger

from fedpipe.config import load_federation
from fedpipe.errors import QuorumError
from fedpipe.strategies import check_strategy
from flows.dispatch import market_runner
from flows.fedavg import start_model
from flows.market import market_describe, market_evaluate
from flows.registry import register_model
from flows.strategies import collect_updates
from flows.screening import screen_on_holdout
from tasks.central import (aggregate_updates, open_metrics, publish_global_model, record_failure, record_round,
                           start_run, write_summary)
from tasks.council import check_schemas, record_lineage
from flows.secure import evaluate_securely
from tasks.resume import resume_run
from tasks.reporting import publish_round_artifacts, publish_summary_artifact


@flow(name="federated-training", log_prints=True)
def federated_training(config: str, rounds: int | None = None, run_id: str | None = None,
                       resume: str | None = None, dispatch: str | None = None, strategy: str | None = None) -> str:
    """Train one global model across the federation's markets; return the run folder.

    With ``resume`` (a run id or folder), continue that run after its last completed round. ``dispatch``
    ("local" or "deployments", default from the federation file) says how the markets' flows are run.
    """
    logger = get_run_logger()
    federation = load_federation(config)
    strategy = check_strategy(strategy or federation.strategy, federation)
    federation = federation.model_copy(update={"strategy": strategy})
    rounds = rounds or federation.rounds
    if resume:
        run, done, global_doc, parent = resume_run(federation, resume)
    else:
        run = start_run(federation, run_id)
        done, global_doc, parent = 0, None, run.genesis  # round 1 starts from the run's signed genesis, not ""
    exchange, markets = run.exchange.url, list(federation.markets)
    run_market_flows = market_runner(dispatch or federation.dispatch, federation.name)
    run_market_flows(market_describe, markets, federation.market_timeout_s, config=config, exchange=exchange)
    markets, stopped = check_schemas(run)  # a market whose schema differs from the contract never trains
    global_doc, parent = start_model(run_market_flows, config, run, markets, global_doc, parent)  # fedavg: round 0
    for round_ in range(done + 1, rounds + 1):
        logger.info("round %d/%d: asking %d markets for their %s updates", round_, rounds, len(markets), strategy)
        payloads, dropped = collect_updates(federation, run_market_flows, markets, run, round_, global_doc, parent,
                                            config)
        if federation.screening.holdout_check:  # optional: each market scores the others' updates
            payloads, dropped = screen_on_holdout(run_market_flows, config, run, round_, global_doc, parent,
                                                  payloads, dropped)
        dropped = {**dropped, **stopped}
        try:
            global_doc = aggregate_updates(global_doc, payloads, federation.quorum, round_, federation.strategy)
        except QuorumError as exc:  # stop with the reasons on record; the last good round stays the latest
            raise QuorumError(record_failure(run, round_, exc, dropped)) from None
        parent = publish_global_model(run, round_, global_doc)
        evaluations, tables = {}, None
        if federation.secure_aggregation:  # masked sums: the centre learns only the federation's totals
            tables = evaluate_securely(run_market_flows, config, run, round_, parent, sorted(payloads))
        else:
            run_market_flows(market_evaluate, sorted(payloads), federation.market_timeout_s,
                             config=config, round_=round_, exchange=exchange)
            evaluations, _ = open_metrics(run, round_, parent)
        _, metrics, roi = record_round(run, round_, parent, payloads, dropped, evaluations, tables)
        record_lineage(run, round_)
        publish_round_artifacts(federation.name, round_, metrics, roi, dropped)
        logger.info("round %d/%d done: %d contributed, %d left out%s", round_, rounds, len(payloads), len(dropped),
                    "".join(f"\n  {market}: {why}" for market, why in sorted(dropped.items())))
    summary = write_summary(run)
    publish_summary_artifact(federation.name, summary.read_text())
    register_model(config, str(run.root), exchange, rounds, dispatch or federation.dispatch)  # champion or challenger
    return str(run.root)
