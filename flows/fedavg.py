"""The fedavg strategy in the round: a linear model on the federation's standardised features, weights averaged.

``start_model`` (before round 1) pools the markets' feature statistics into the round-0 global model; each round
``train_fedavg`` asks the markets for their weights and returns them checked, or (secure aggregation) returns the
survivors' unmasked sum. The round flow then aggregates, publishes and evaluates as for trees.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from fedpipe.errors import QuorumError
from fedpipe.fedavg_round import SCALER, WEIGHTS, misfits, objective
from fedpipe.market import fetch_genesis
from fedpipe.secure_round import withhold_sum
from flows.market import _site
from flows.secure import recover_masks
from tasks.central import publish_global_model, record_failure
from tasks.fedavg import (check_plain, fetch_start_model, initial_model, open_sealed_updates, scaler_payload,
                          seal_payload, unmask_total, weights_payload)
from tasks.market import load_market_data, publish, report_status, sit_out, validate_market_data
from tasks.secure import open_masked, publish_roster


@flow(name="market-scaler", flow_run_name="{market}: feature statistics (round {round_})")
def market_scaler(config: str, market: str, round_: int, exchange: str) -> str:
    """Before round 1 (fedavg): validate the local data, seal its feature statistics (or their masked vector)."""
    site = _site(config, market, exchange)
    try:
        data = load_market_data(site)
        validate_market_data(site, data)
        envelope = seal_payload(site, round_, fetch_genesis(site), scaler_payload(site, data))  # parent: the genesis
        publish(site, site.exchange.update(round_, market), envelope)
    except Exception as exc:
        raise sit_out(site, round_, exc) from None
    return "sealed"


@flow(name="market-train-fedavg", flow_run_name="{market}: train round {round_} (fedavg)")
def market_train_fedavg(config: str, market: str, round_: int, exchange: str) -> str:
    """Validate the local data, run a few SGD epochs from the global weights, seal the weights (or masked sums)."""
    site = _site(config, market, exchange)
    try:
        data = load_market_data(site)
        validation = validate_market_data(site, data)
        global_doc, parent = fetch_start_model(site, round_)
        payload = weights_payload(site, data, global_doc, round_)
        publish(site, site.exchange.update(round_, market), seal_payload(site, round_, parent, payload))
    except Exception as exc:
        raise sit_out(site, round_, exc) from None
    report_status(site, round_, "sealed", validation=validation)
    get_run_logger().info("%s: sealed its fedavg weights for round %d", market, round_)
    return "sealed"


def start_model(run_market_flows, config: str, run, markets: list[str], global_doc, parent: str):
    """fedavg before round 1: the pooled scaler with zero weights, published as round 0. Otherwise a no-op."""
    if run.federation.strategy != "fedavg" or global_doc is not None:
        return global_doc, parent
    payloads, dropped = _collect(run_market_flows, market_scaler, config, run, 0, parent, markets, SCALER, None)
    if len(payloads) < run.federation.quorum:
        error = QuorumError(f"round 0: only {len(payloads)} market(s) sent usable feature statistics "
                            f"({', '.join(sorted(payloads)) or 'none'}), quorum is {run.federation.quorum}; "
                            "no fedavg starting model")
        raise QuorumError(record_failure(run, 0, error, dropped)) from None
    doc = initial_model(payloads, objective(run.federation))
    get_run_logger().info("round 0: fedavg scaler pooled from %d markets; zero weights published", len(payloads))
    return doc, publish_global_model(run, 0, doc)


def train_fedavg(run_market_flows, config: str, run, round_: int, parent: str, global_doc: dict,
                 markets: list[str]):
    """One fedavg round's updates: (payloads to aggregate, reasons for the markets left out)."""
    return _collect(run_market_flows, market_train_fedavg, config, run, round_, parent, markets, WEIGHTS, global_doc)


def _collect(run_market_flows, market_flow, config: str, run, round_: int, parent: str, markets: list[str],
             label: str, global_doc):
    """Run ``market_flow`` in every market and open what they sealed: checked in clear, or masked and summed."""
    secure = run.federation.secure_aggregation
    roster = publish_roster(run, round_, markets, label) if secure else markets
    run_market_flows(market_flow, roster, run.federation.market_timeout_s, config=config, round_=round_,
                     exchange=run.exchange.url)
    opened, dropped = open_sealed_updates(run, round_, parent, roster)
    if not secure:
        return check_plain(run, label, global_doc, opened, dropped)
    kind, vectors, missing = open_masked(run, round_, roster, opened, dropped, label)
    refused = misfits(vectors, label, global_doc)
    # a misfit's vector reached the centre: it is no dropout, its masks cannot be recovered without unmasking it
    vectors, missing = withhold_sum(roster, opened, {m: v for m, v in vectors.items() if m not in refused},
                                    {**missing, **refused})
    if not vectors:  # nothing to sum: the round's quorum check reports each market's reason
        get_run_logger().warning("round %d: no %s sum: %s", round_, label, missing)
        return {}, missing
    revealed = recover_masks(run_market_flows, config, run, round_, parent, sorted(vectors), missing, label)
    features = next((p["secagg"].get("features") for m, p in sorted(opened.items()) if m in vectors), None)
    return unmask_total(round_, label, vectors, roster, revealed, missing,
                        features if label == SCALER else None)
