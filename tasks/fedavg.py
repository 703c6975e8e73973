"""Tasks of the fedavg strategy (fedpipe.fedavg_round): market side, then centre side."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from fedpipe import fedavg_round as f
from fedpipe import market as m
from fedpipe import secagg

fedavg_task = task(cache_policy=NO_CACHE)


# --- in the market -------------------------------------------------------------------------------

@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])  # exchange I/O can be remote
def fetch_start_model(site: m.MarketSite, round_: int):
    return f.fetch_start_model(site, round_)


@fedavg_task
def scaler_payload(site: m.MarketSite, data) -> dict:
    return f.scaler_payload(site, data)


@fedavg_task
def weights_payload(site: m.MarketSite, data, global_doc: dict, round_: int) -> dict:
    return f.weights_payload(site, data, global_doc, round_)


@fedavg_task
def seal_payload(site: m.MarketSite, round_: int, parent: str, payload: dict) -> bytes:
    return m.seal_payload(site, round_, parent, payload)


# --- at the centre -------------------------------------------------------------------------------

@fedavg_task
def open_sealed_updates(run, round_: int, parent: str, markets: list[str]):
    """Verify and decrypt each market's sealed payload: (opened by market, reasons for those missing)."""
    from fedpipe.central import open_sealed

    opened, dropped = open_sealed(run, round_, parent, "update")
    return {mk: p for mk, p in opened.items() if mk in markets}, dropped


@fedavg_task
def check_plain(run, label: str, global_doc: dict | None, opened: dict, dropped: dict):
    """Plain mode: keep the well-formed statistics (round 0) or weight updates; (kept, reasons for the rest)."""
    if label == f.SCALER:
        kept, rejected = f.check_scaler_stats(opened, f.objective(run.federation))
    else:
        kept, rejected = f.check_weight_updates(global_doc, opened)
    return kept, {**dropped, **rejected}


@fedavg_task
def unmask_total(round_: int, label: str, vectors: dict, roster: list[str], revealed: dict, missing: dict,
                 features: list[str] | None = None):
    """Secure mode: the survivors' summed vector as their joint payload; none (each says why) if it cannot be."""
    try:
        total = f.unmask(vectors, roster, revealed)
    except secagg.SecAggError as exc:
        get_run_logger().warning("round %d: the %s sum cannot be unmasked: %s", round_, label, exc)
        return {}, {**missing, **{m: f"{label} sum not unmasked: {exc}" for m in vectors}}
    get_run_logger().info("round %d: %s unmasked from %d markets' masked vectors (%s)", round_, label,
                          len(vectors), ", ".join(sorted(vectors)))
    extra = {"features": features} if features is not None else {}
    return f.summed(total, sorted(vectors), **extra), missing


@fedavg_task
def initial_model(payloads: dict, objective: str) -> dict:
    return f.initial_model(payloads, objective)
