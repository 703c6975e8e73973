"""Secure aggregation of the evaluate step ([federation] secure_aggregation): only totals reach the centre."""

from __future__ import annotations

from prefect import flow

from fedpipe.secure_round import LABEL, reveal_path
from flows.market import _site, market_evaluate
from tasks.central import open_metrics
from tasks.market import publish
from tasks.secure import (open_masked, open_reveals, publish_roster, publish_survivors, seal_reveal,
                          sum_evaluations)


@flow(name="market-reveal", flow_run_name="{market}: reveal {label} seeds for round {round_}")
def market_reveal(config: str, market: str, round_: int, exchange: str, parent: str, label: str = LABEL) -> str:
    """A survivor reveals its pairwise seeds (for ``label``) with the markets that dropped, sealed to the aggregator."""
    site = _site(config, market, exchange)
    publish(site, reveal_path(site.exchange, round_, market, label), seal_reveal(site, round_, parent, label))
    return "revealed"


def recover_masks(run_market_flows, config: str, run, round_: int, parent: str, survivors: list[str],
                  missing: dict, label: str = LABEL) -> dict:
    """The survivors' revealed seeds with the roster markets missing from a masked sum (none missing: none)."""
    if not (missing and survivors):
        return {}
    publish_survivors(run, round_, sorted(survivors), label)
    run_market_flows(market_reveal, sorted(survivors), run.federation.market_timeout_s, config=config,
                     round_=round_, exchange=run.exchange.url, parent=parent, label=label)
    revealed, _ = open_reveals(run, round_, parent, sorted(survivors), label)
    return revealed


def evaluate_securely(run_market_flows, config: str, run, round_: int, parent: str, markets: list[str]):
    """Within the round flow: roster, masked evaluations, reveals for any dropout, unmasked totals (two tables)."""
    roster = publish_roster(run, round_, markets)
    timeout, exchange = run.federation.market_timeout_s, run.exchange.url
    run_market_flows(market_evaluate, roster, timeout, config=config, round_=round_, exchange=exchange)
    opened, dropped = open_metrics(run, round_, parent)
    kind, vectors, missing = open_masked(run, round_, roster, opened, dropped)
    # recover the dropped markets' masks from the survivors' seeds
    revealed = recover_masks(run_market_flows, config, run, round_, parent, sorted(vectors), missing)
    return sum_evaluations(round_, kind, vectors, roster, revealed)
