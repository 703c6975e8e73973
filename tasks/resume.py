"""Reopening an interrupted run at the centre."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from fedpipe import resume as r


@task(cache_policy=NO_CACHE)
def resume_run(federation, run: str):
    """Reopen ``run``: (run, last completed round, its global model, that model's sha256)."""
    return r.resume_run(federation, run)
