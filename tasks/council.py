"""Tasks for the data council's checks: schema before round 1, lineage per model, the registry and its gate.

Market tasks (``describe_schema``, ``score_champion``) run inside a market's flow; the others at the centre and
see only the exchange, the run folder and the registry.
"""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from fedpipe import gate as g
from fedpipe import lineage as lin
from fedpipe import schema
from fedpipe.registry import Registry
from tasks.reporting import artifact_key

council_task = task(cache_policy=NO_CACHE)


# --- in the market -------------------------------------------------------------------------------

@council_task
def describe_schema(site, data) -> dict:
    return schema.describe_market(site, data)


@council_task
def score_champion(site, data, champion_doc: dict) -> dict:
    return g.score_champion(site, data, champion_doc)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])  # exchange I/O can be remote
def fetch_champion(site):
    return g.fetch_champion(site)


# --- at the centre -------------------------------------------------------------------------------

@council_task
def check_schemas(run) -> tuple[list[str], dict[str, str]]:
    """Compare every market's schema report with the contract: (markets that may train, stopped with reason)."""
    return schema.check_markets(run)


@council_task
def record_lineage(run, round_: int) -> dict:
    """Write the round model's lineage next to it and show it as a Prefect markdown artifact."""
    lineage = lin.write_round_lineage(run, round_)
    create_markdown_artifact(key=artifact_key(run.federation.name, "lineage"), markdown=lin.lineage_markdown(lineage),
                             description=f"Lineage of the round {round_} global model")
    return lineage


@council_task
def reopen_run(config: str, run_root: str, exchange: str):
    """The run as the centre recorded it (central.Run), from its folder: for flows that take plain parameters."""
    import json
    from pathlib import Path

    from fedpipe.central import Run
    from fedpipe.config import load_federation
    from fedpipe.storage import Exchange

    root = Path(run_root)
    rounds = json.loads((root / "rounds.json").read_text()) if (root / "rounds.json").exists() else []
    return Run(load_federation(config), root.name, root, Exchange(exchange), rounds)


@council_task
def register_candidate(run, round_: int) -> tuple[int, bytes | None]:
    """Add the run's final model (with its lineage) to the registry; return (version, champion model or None)."""
    registry = Registry(run.federation.registry.dir, run.federation.name)
    lineage = lin.round_lineage(run, round_)
    champion = registry.aliases().get("champion")
    lineage["registry_parent"] = champion
    version = registry.add(run.model_path(round_).read_bytes(), lineage)
    return version, registry.load(champion, "model.json") if champion is not None else None


@council_task
def publish_champion(run, model: bytes) -> str:
    return g.publish_champion(run, model)


@council_task
def decide_promotion(run, version: int, round_: int, champion_sha: str | None) -> dict:
    """Run the gate, record the verdict in the registry, write the model card; return the gate result."""
    import importlib

    import pandas as pd

    fed = run.federation
    registry = Registry(fed.registry.dir, fed.name)
    candidate = g.candidate_metrics(run.root, round_)
    champion, missing = g.open_gate_metrics(run, champion_sha) if champion_sha else (None, {})
    left_out = next((r.get("dropped", {}) for r in run.rounds if r["round"] == round_), {})
    missing = {**{m: f"left out of round {round_}: {why}" for m, why in left_out.items()}, **missing}
    result = g.gate(candidate, champion, metric=fed.registry.metric, tolerance=fed.registry.tolerance,
                    markets=sorted(candidate) if champion is None else g.vouching_markets(fed), reasons=missing)
    result["champion_version"] = registry.aliases().get("champion")
    result["missing"] = missing
    alias = registry.decide(version, result)
    roi_path = run.root / "roi.parquet"
    roi = pd.read_parquet(roi_path) if roi_path.exists() else None
    roi = roi[roi["round"] == round_] if roi is not None else None
    doc = importlib.import_module(f"usecases.{fed.usecase}").__doc__ or ""  # the use case's own description
    card = g.model_card(version, registry.load(version, "lineage.json"), result, alias, roi, doc)
    registry.write_file(version, "card.md", card.encode())
    create_markdown_artifact(key=artifact_key(fed.name, "model-card"), markdown=card,
                             description=f"Registry v{version}: {alias}. {result['summary']}")
    return {"version": version, "alias": alias, **result}
