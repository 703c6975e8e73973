"""Tasks that run at the centre. None of them can reach a market's rows: they see only the exchange."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from fedpipe import central as c
from fedpipe import screening

central_task = task(cache_policy=NO_CACHE)


@central_task
def start_run(federation, run_id=None, exchange_url=None) -> c.Run:
    return c.start_run(federation, run_id, exchange_url)


@central_task
def publish_global_model(run: c.Run, round_: int, doc: dict) -> str:
    return c.publish_global_model(run, round_, doc)


@central_task
def publish_visit_model(run: c.Run, round_: int, visits: int, doc: dict) -> str:
    return c.publish_visit_model(run, round_, visits, doc)


@central_task
def leave_out(run: c.Run, round_: int, market: str, reason: str) -> None:
    c.leave_out(run, round_, market, reason)


@central_task
def open_updates(run: c.Run, round_: int, parent: str | dict[str, str], global_doc: dict | None,
                 markets: list[str] | None = None):
    """Verify, decrypt and screen each market's (or ``markets``') update; (payloads, reasons for those left out)."""
    opened, dropped = c.open_sealed(run, round_, parent, "update", markets=markets)
    kept, rejected = c.screen_updates(global_doc, opened)
    kept, limited = screening.check_limits(run.federation, global_doc, kept)
    return kept, {**dropped, **rejected, **limited}


@central_task
def aggregate_updates(global_doc, payloads: dict, quorum: int, round_: int, strategy: str = "bagging") -> dict:
    return c.aggregate_round(global_doc, payloads, quorum, round_, strategy)


@central_task
def open_metrics(run: c.Run, round_: int, model_sha: str):
    return c.open_sealed(run, round_, model_sha, "metrics")


@central_task
def record_round(run: c.Run, round_: int, model_sha: str, payloads: dict, dropped: dict, evaluations: dict,
                 tables: tuple | None = None):
    """``tables`` (metrics, roi) replace the per-market tables, e.g. federation totals from secure aggregation."""
    metrics, roi = tables if tables is not None else c.round_tables(round_, evaluations)
    # None: the row count was masked (secure fedavg); the centre knows only the total
    contributors = {market: None if p.get("n_rows") is None else int(p["n_rows"]) for market, p in payloads.items()}
    return c.record_round(run, round_, model_sha, contributors, dropped, metrics, roi), metrics, roi


@central_task
def record_failure(run: c.Run, round_: int, error: Exception, dropped: dict) -> str:
    return c.record_failure(run, round_, error, dropped)


@central_task
def write_summary(run: c.Run):
    return c.write_summary(run)
