"""Prefect artifacts: where users look for per-round results."""

from __future__ import annotations

import re

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from fedpipe.report import round_markdown, round_summary


def artifact_key(*parts: str) -> str:
    """Prefect keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
            for row in frame.to_dict(orient="records")]


@task(cache_policy=NO_CACHE)
def publish_round_artifacts(federation: str, round_: int, metrics: pd.DataFrame, roi: pd.DataFrame,
                            dropped: dict[str, str]) -> None:
    """One table of metrics and ROI per round, keyed so the latest shows first in the UI."""
    left_out = "; ".join(f"{m}: {why}" for m, why in dropped.items()) or "none"
    create_table_artifact(
        key=artifact_key(federation, "round-metrics"), table=_records(metrics),
        description=f"Round {round_}: held-out metrics per market, federated vs local-only. Left out: {left_out}",
    )
    create_table_artifact(
        key=artifact_key(federation, "round-roi"), table=_records(roi),
        description=f"Round {round_}: ROI per market and for the federation",
    )
    if len(metrics) and len(roi):  # the council's view: per market, metric, ROI and vs local-only, and the story
        summary = round_summary(metrics, roi)
        create_table_artifact(
            key=artifact_key(federation, "round-summary"), table=_records(summary),
            description=f"Round {round_}: per market, headline metric and ROI, federated vs local-only",
        )
        create_markdown_artifact(
            key=artifact_key(federation, "round-report"), markdown=round_markdown(federation, round_, summary, dropped),
            description=f"Round {round_}: what happened, in a paragraph and a table",
        )


@task(cache_policy=NO_CACHE)
def publish_summary_artifact(federation: str, summary_markdown: str) -> None:
    create_markdown_artifact(key=artifact_key(federation, "run-summary"), markdown=summary_markdown,
                             description="Run summary: participation per round, local-only vs federated")
