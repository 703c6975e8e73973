"""Optional hold-out screening of updates ([screening] holdout_check): each market scores the others' trees."""

from __future__ import annotations

from prefect import flow

from fedpipe.screening import report_path
from flows.market import _site
from tasks.market import load_market_data, publish
from tasks.screening import judge_updates, post_candidates, score_candidates, seal_report


@flow(name="market-screen", flow_run_name="{market}: screen round {round_}")
def market_screen(config: str, market: str, round_: int, exchange: str, parent: str) -> str:
    """Score the baseline and every other market's candidate on the held-out rows; seal the losses only."""
    site = _site(config, market, exchange)
    data = load_market_data(site)
    losses = score_candidates(site, data, round_)
    publish(site, report_path(site.exchange, round_, market), seal_report(site, round_, parent, losses))
    return "screened"


def screen_on_holdout(run_market_flows, config: str, run, round_: int, global_doc, parent: str,
                      payloads: dict, dropped: dict) -> tuple[dict, dict]:
    """Within the round flow: post candidates, let the contributing markets score them, drop the harmful ones."""
    markets = post_candidates(run, round_, global_doc, payloads)
    run_market_flows(market_screen, markets, run.federation.market_timeout_s, config=config, round_=round_,
                     exchange=run.exchange.url, parent=parent)
    kept, rejected = judge_updates(run, round_, parent, payloads)
    return kept, {**dropped, **rejected}
