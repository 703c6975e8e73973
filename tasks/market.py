"""Tasks that run inside a market flow. Only these touch the market's rows."""

from __future__ import annotations

import logging

from prefect import task
from prefect.cache_policies import NO_CACHE

from fedpipe import market as m
from fedpipe.errors import MarketExcluded

# Inputs here are DataFrames and boosters: hashing them for Prefect's cache would cost more than the work.
market_task = task(cache_policy=NO_CACHE)


@market_task
def load_market_data(site: m.MarketSite):
    return m.load_data(site)


@market_task
def validate_market_data(site: m.MarketSite, data) -> list[dict]:
    return [s.to_dict() for s in m.validate_data(site, data)]


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])  # exchange I/O can be remote
def fetch_global_model(site: m.MarketSite, round_: int, visits: int = 0):
    return m.fetch_global_model(site, round_, visits)


@market_task
def train_local_update(site: m.MarketSite, data, global_doc):
    return m.train_update(site, data, global_doc)


@market_task
def seal_update(site: m.MarketSite, round_: int, parent: str, update) -> bytes:
    return m.seal_payload(site, round_, parent, {"model": update.model, "n_rows": update.n_rows})


@market_task
def evaluate_models(site: m.MarketSite, data, global_doc, round_: int) -> dict:
    return m.evaluate_models(site, data, global_doc, round_)


@market_task
def seal_metrics(site: m.MarketSite, round_: int, model_sha: str, evaluation: dict) -> bytes:
    return m.seal_payload(site, round_, model_sha, evaluation, kind="metrics")


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])
def publish(site: m.MarketSite, path: str, envelope: bytes) -> str:
    site.exchange.put(path, envelope)
    return path


@market_task
def report_status(site: m.MarketSite, round_: int, status: str, **details) -> None:
    m.write_status(site, round_, status, **details)


def sit_out(site: m.MarketSite, round_: int, exc: Exception) -> MarketExcluded:
    """Post why this market sits the round out and return the error its flow raises instead of ``exc``.

    Both carry only the status note's words (file and field, not the data's location): a failed flow's error and
    traceback go to the Prefect server. The full error stays in this process's own log, for the market's team.
    """
    logging.getLogger("fedpipe.market").warning("%s: round %d: %s", site.market, round_, exc, exc_info=exc)
    note = m.describe_failure(site, exc)
    report_status(site, round_, "excluded", **note)
    return MarketExcluded(note["reason"])
