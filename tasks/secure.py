"""Tasks of secure aggregation (fedpipe.secure_round): publish roster and survivors, mask, reveal, unmask."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from fedpipe import secagg
from fedpipe import market as m
from fedpipe import secure_round as s

secure_task = task(cache_policy=NO_CACHE)


@secure_task
def publish_roster(run, round_: int, markets: list[str], label: str = s.LABEL) -> list[str]:
    return s.publish_roster(run, round_, markets, label)


@secure_task
def publish_survivors(run, round_: int, survivors: list[str], label: str = s.LABEL) -> None:
    s.publish_survivors(run, round_, survivors, label)


@secure_task
def mask_evaluation(site: m.MarketSite, round_: int, evaluation: dict) -> dict:
    return s.mask_evaluation(site, round_, evaluation)


@secure_task
def seal_reveal(site: m.MarketSite, round_: int, parent: str, label: str = s.LABEL) -> bytes:
    return m.seal_payload(site, round_, parent, s.reveal(site, round_, label), kind="reveal")


@secure_task
def open_masked(run, round_: int, roster: list[str], opened: dict, dropped: dict, label: str = s.LABEL):
    """(kind, masked vectors, reasons for roster markets missing from the sum).

    No vectors at all if one whose envelope reached the centre is unusable: it cannot be recovered like a dropout.
    """
    kind, vectors, refused = s.masked_vectors(opened, roster)
    missing = {mk: refused.get(mk) or dropped.get(mk, "no masked evaluation delivered")
               for mk in roster if mk not in vectors}
    received = set(opened) | s.delivered(run.exchange, round_, roster, label)
    vectors, missing = s.withhold_sum(roster, received, vectors, missing)
    for market, why in missing.items():
        get_run_logger().warning("round %d: %s is missing from the secure sum: %s", round_, market, why)
    return kind, vectors, missing


@secure_task
def open_reveals(run, round_: int, parent: str, survivors: list[str], label: str = s.LABEL):
    return s.open_reveals(run, round_, parent, survivors, label)


@secure_task
def sum_evaluations(round_: int, kind: str, vectors: dict, roster: list[str], revealed: dict):
    """The federation's rows from the unmasked sum; none (and a warning) if it cannot be unmasked."""
    if not vectors:  # withheld (see open_masked's warnings) or none delivered
        get_run_logger().warning("round %d: no federation figures recorded: no masked vectors to sum", round_)
        return s.totals_tables(round_, None)
    try:
        totals = s.unmask_totals(kind, vectors, roster, revealed)
    except secagg.SecAggError as exc:
        get_run_logger().warning("round %d: no federation figures recorded: %s", round_, exc)
        totals = None
    else:
        get_run_logger().info("round %d: federation totals unmasked from %d markets' masked sums (%s)",
                              round_, len(vectors), ", ".join(sorted(vectors)))
    return s.totals_tables(round_, totals)
