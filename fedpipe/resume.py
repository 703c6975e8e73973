"""Continue an interrupted run from its last completed round.

A round is complete when ``rounds.json`` records it: that file is written last, atomically, after the round's
model and tables. So after a crash at any point the run folder holds every completed round intact, plus perhaps
leftovers of the round that was under way (a model file, sealed updates in the exchange, table rows). Resuming
moves those leftovers to ``interrupted/`` (kept for inspection, never read again), drops their table rows, and
re-runs that round from the last recorded global model, checked against the hash recorded for it.

Every market's update is stored under (round, market) in the exchange and opened once per round into a dict
keyed by market, so a re-run round counts each market at most once; the leftovers of the interrupted attempt are
moved away first, so a market that fails in the re-run cannot be counted from its earlier attempt either.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from fedpipe import sealing
from fedpipe.aggregation import load_model_doc
from fedpipe.central import Run, publish_global_model, start_run
from fedpipe.config import FederationConfig
from fedpipe.errors import FedpipeError
from fedpipe.storage import atomic_write_bytes, atomic_write_parquet

log = logging.getLogger(__name__)


class ResumeError(FedpipeError):
    """A run cannot be resumed: not found, made from another federation file, or its records are damaged."""


def run_folder(federation: FederationConfig, run: str | Path) -> Path:
    """``run`` is a run id, or the path of a run folder, under the federation's runs folder."""
    root = (federation.runs_dir / Path(run).name).resolve()
    if Path(run).is_absolute() or "/" in str(run):
        if Path(run).resolve().parent != federation.runs_dir.resolve():
            raise ResumeError(f"run folder {run} is not under this federation's runs folder {federation.runs_dir}")
    if not ((root / "federation.toml").is_file() or (root / "rounds.json").is_file()):
        raise ResumeError(f"no run '{Path(run).name}' to resume (looked in {federation.runs_dir})")
    return root


def completed_rounds(root: Path) -> list[dict]:
    """The round records of a run, checked to be rounds 1..k in order."""
    path = root / "rounds.json"
    if not path.exists():
        return []
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ResumeError(f"{path}: unreadable round records: {exc}") from None
    if not isinstance(records, list) or [r.get("round") if isinstance(r, dict) else None for r in records] != \
            list(range(1, len(records) + 1)):
        raise ResumeError(f"{path}: round records are not rounds 1..{len(records)} in order")
    return records


def _last_model(root: Path, record: dict) -> tuple[dict, bytes]:
    path = root / record["model"]
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ResumeError(f"{path}: the model of completed round {record['round']} is unreadable: {exc}") from None
    if sealing.sha256_hex(raw) != record["model_sha256"]:
        raise ResumeError(f"{path}: does not match the sha256 recorded for round {record['round']} (corrupted)")
    return load_model_doc(raw), raw


def _round_of(relative: str) -> int | None:
    """The round an exchange path belongs to: round-NNN/... or global/round-NNN.json(.sig)."""
    match = re.search(r"(?:^|/)round-(\d+)(?:/|\.json)", relative)
    return int(match.group(1)) if match else None


def _set_aside(run: Run, done: int) -> list[str]:
    """Move what an interrupted round left behind to interrupted/<time>/; return what was moved."""
    aside = run.root / "interrupted" / datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    moved = []
    prefix = run.exchange.root.rstrip("/") + "/"
    for path in run.exchange.listdir():
        relative = path[len(prefix):] if path.startswith(prefix) else path.rsplit("/", 1)[-1]
        if (_round_of(relative) or 0) > done:
            atomic_write_bytes(aside / "exchange" / relative, run.exchange.get(path))
            run.exchange.remove(path)
            moved.append(f"exchange/{relative}")
    for path in sorted((run.root / "models").glob("round-*.json")):
        if (_round_of(path.name) or 0) > done:
            (aside / "models").mkdir(parents=True, exist_ok=True)
            shutil.move(str(path), str(aside / "models" / path.name))
            moved.append(f"models/{path.name}")
    for name in ("metrics.parquet", "roi.parquet"):
        table = run.root / name
        if table.exists():
            frame = pd.read_parquet(table)
            if (frame["round"] > done).any():
                atomic_write_parquet(table, frame[frame["round"] <= done])
                moved.append(f"{name} rows of rounds > {done}")
    return moved


def resume_run(federation: FederationConfig, run: str | Path) -> tuple[Run, int, dict | None, str]:
    """Reopen a run; return (run, last completed round, its global model or None, that model's sha256 or, with no
    round done, the run's genesis hash)."""
    root = run_folder(federation, run)
    if federation.source is not None and (root / "federation.toml").exists() and \
            (root / "federation.toml").read_bytes() != Path(federation.source).read_bytes():
        raise ResumeError(f"{root.name} was started from a different federation file than {federation.source}; "
                          "resume with the same file, or start a new run")
    records = completed_rounds(root)
    doc, raw = _last_model(root, records[-1]) if records else (None, b"")  # checked before anything is touched
    handle = start_run(federation, root.name)  # same folder, same exchange, runs/latest pointed back at it
    handle.rounds = records
    moved = _set_aside(handle, len(records))
    if moved:
        log.warning("run %s: set aside the interrupted round's leftovers: %s", root.name, ", ".join(moved))
    if not records:
        return handle, 0, None, handle.genesis  # round 1 again, from this restart's new genesis
    done = len(records)
    exchange_copy = handle.exchange.global_model(done)
    if not handle.exchange.exists(exchange_copy) or handle.exchange.get(exchange_copy) != raw \
            or not handle.exchange.exists(exchange_copy + ".sig"):
        publish_global_model(handle, done, doc)  # the markets fetch it from the exchange
    return handle, done, doc, records[-1]["model_sha256"]
