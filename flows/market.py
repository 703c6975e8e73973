"""A market's part in a round. Runs where the market's data lives; only sealed envelopes leave it."""

from __future__ import annotations

from prefect import flow, get_run_logger

from fedpipe.market import MarketSite
from fedpipe.site import open_market_site
from tasks.market import (evaluate_models, fetch_global_model, load_market_data, publish, report_status,
                          seal_metrics, seal_update, sit_out, train_local_update, validate_market_data)


def _site(config: str, market: str, exchange: str) -> MarketSite:
    return open_market_site(config, market, exchange)  # on an agent: paths and keys from its own site file


@flow(name="market-train", flow_run_name="{market}: train round {round_}")
def market_train(config: str, market: str, round_: int, exchange: str, visits: int = 0) -> str:
    """Validate the local data, continue boosting from the global model, seal the new trees for the centre.

    ``visits`` (cyclic strategy): start from the model as it stands after that many markets this round.
    """
    site = _site(config, market, exchange)
    try:
        data = load_market_data(site)
        validation = validate_market_data(site, data)
        global_doc, parent = fetch_global_model(site, round_, visits)
        update = train_local_update(site, data, global_doc)
        publish(site, site.exchange.update(round_, market), seal_update(site, round_, parent, update))
    except Exception as exc:
        raise sit_out(site, round_, exc) from None
    report_status(site, round_, "sealed", trees=len(update.model["learner"]["gradient_booster"]["model"]["trees"]),
                  validation=validation)
    get_run_logger().info("%s: sealed %d rows' worth of new trees for round %d", market, update.n_rows, round_)
    return "sealed"


@flow(name="market-evaluate", flow_run_name="{market}: evaluate round {round_}")
def market_evaluate(config: str, market: str, round_: int, exchange: str) -> str:
    """Score the new global model and the local-only model on held-out rows; seal the metrics."""
    site = _site(config, market, exchange)
    data = load_market_data(site)
    global_doc, model_sha = fetch_global_model(site, round_ + 1)  # the model round_ produced
    evaluation = evaluate_models(site, data, global_doc, round_)
    if site.federation.secure_aggregation:  # only a masked vector of sums leaves; own figures stay in state/
        from tasks.secure import mask_evaluation

        evaluation = mask_evaluation(site, round_, evaluation)
    publish(site, site.exchange.metrics(round_, market), seal_metrics(site, round_, model_sha, evaluation))
    return "evaluated"


@flow(name="market-describe", flow_run_name="{market}: describe schema")
def market_describe(config: str, market: str, exchange: str) -> str:
    """Before round 1: tell the centre the contract version and the tables' schema and fingerprints (no values)."""
    from tasks.council import describe_schema

    site = _site(config, market, exchange)
    site.identity()  # its keys exist from first contact: a secure round 0 (fedavg's scaler) masks against them
    try:
        report = describe_schema(site, load_market_data(site))
    except Exception as exc:
        raise sit_out(site, 0, exc) from None
    report_status(site, 0, "described", schema=report)
    return "described"


@flow(name="market-gate", flow_run_name="{market}: score the champion")
def market_gate(config: str, market: str, exchange: str) -> str:
    """For the registry's gate: score the current champion on held-out rows; seal only the metrics."""
    from fedpipe.gate import GATE_ROUND, gate_path
    from tasks.council import fetch_champion, score_champion

    site = _site(config, market, exchange)
    champion_doc, champion_sha = fetch_champion(site)
    scores = score_champion(site, load_market_data(site), champion_doc)
    publish(site, gate_path(site.exchange, f"{market}.sealed"), seal_metrics(site, GATE_ROUND, champion_sha, scores))
    return "scored"
