"""Tasks of the optional hold-out screening (fedpipe.screening): candidates out, losses back."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from fedpipe import screening as s

screening_task = task(cache_policy=NO_CACHE)


@screening_task
def post_candidates(run, round_: int, global_doc, payloads: dict) -> list[str]:
    return s.post_candidates(run, round_, global_doc, payloads)


@screening_task
def judge_updates(run, round_: int, parent: str, payloads: dict):
    """Open the markets' hold-out reports; return (kept payloads, reasons for rejected updates)."""
    return s.judge(s.open_reports(run, round_, parent), payloads, run.federation.screening.max_loss_increase)


@screening_task
def score_candidates(site, data, round_: int) -> dict:
    return s.holdout_losses(site, data, round_)


@screening_task
def seal_report(site, round_: int, parent: str, losses: dict) -> bytes:
    from fedpipe.market import seal_payload

    return seal_payload(site, round_, parent, {"losses": losses}, kind="metrics")
