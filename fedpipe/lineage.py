"""Lineage of each global model version: where it came from, in enough detail for the data council to audit it.

For every round's global model the centre writes ``models/round-NNN.lineage.json`` next to the model:
contributing markets with their data fingerprints (content hashes computed inside the market before round 1),
row counts, contract version and validation summary; markets left out and why; strategy and parameters; the
parent model; code version (git commit) and package versions; times. Everything here arrived through the
exchange as counts and hashes: no rows.

Public API: :func:`round_lineage`, :func:`write_round_lineage`, :func:`lineage_markdown`, :func:`code_version`,
:func:`package_versions`.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from fedpipe.storage import atomic_write_json
from fedpipe.strategies import round_step

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("fedpipe", "xgboost", "prefect", "great-expectations", "cryptography", "pandas", "numpy",
            "scikit-learn", "pyarrow")


def code_version(repo: Path = REPO) -> dict[str, Any]:
    """The git commit of the code that built the model, and whether the checkout had uncommitted changes."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": bool(status) if status is not None else None}


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _validation_note(run, round_: int, market: str) -> list[dict] | None:
    """The validation summary the market put in its round status note (counts, no rows), if any."""
    path = run.exchange.status(round_, market)
    try:
        return json.loads(run.exchange.get(path)).get("validation") if run.exchange.exists(path) else None
    except (ValueError, OSError, AttributeError):
        return None


def round_lineage(run, round_: int) -> dict[str, Any]:
    """Assemble the lineage of round ``round_``'s global model from the run's records (``run``: central.Run).

    Reads ``rounds.json`` (contributors, row counts, model hash, left out), ``schema-check.json`` (each
    market's contract version and data fingerprints) and the round's status notes (validation summaries).
    """
    records = {r["round"]: r for r in json.loads((run.root / "rounds.json").read_text())}
    record = records[round_]
    check_path = run.root / "schema-check.json"
    check = json.loads(check_path.read_text()) if check_path.exists() else {"reports": {}, "contract": {}}
    fed = run.federation
    markets = {}
    for market, n_rows in sorted(record["contributors"].items()):
        report = check["reports"].get(market, {})
        tables = report.get("tables", {})
        markets[market] = {
            "train_rows": None if n_rows is None else int(n_rows),  # None: masked (secure fedavg)
            "test_rows": tables.get("test", {}).get("rows"),
            "fingerprint": {name: t.get("fingerprint") for name, t in tables.items()},
            "files_fingerprint": report.get("files_fingerprint"),
            "contract_version": report.get("contract_version"),
            "validation": _validation_note(run, round_, market),
        }
    parent = records.get(round_ - 1, {}).get("model_sha256")
    return {
        "federation": fed.name,
        "run_id": run.run_id,
        "round": round_,
        "model": record["model"],
        "model_sha256": record["model_sha256"],
        "parent_model_sha256": parent,
        "usecase": fed.usecase,
        "contract": {k: check["contract"].get(k) for k in ("suite", "contract_version", "contract_sha256")},
        "markets": markets,
        "left_out": record.get("dropped", {}),
        "strategy": fed.strategy,
        "parameters": {"xgboost": fed.xgb_params(), "trees_per_round": fed.trees_per_round, "quorum": fed.quorum,
                       "seed": fed.seed, "usecase": fed.usecase_options,
                       "subsample": {m: c.subsample for m, c in fed.markets.items()}},
        "code": code_version(),
        "packages": package_versions(),
        "times": {"schema_checked": check.get("checked"), "round_finished": record.get("finished"),
                  "lineage_written": datetime.now(timezone.utc).isoformat()},
    }


def lineage_path(run, round_: int) -> Path:
    return run.model_path(round_).with_suffix(".lineage.json")


def write_round_lineage(run, round_: int) -> dict[str, Any]:
    """Write ``models/round-NNN.lineage.json`` next to the round's model (atomically) and return it."""
    lineage = round_lineage(run, round_)
    atomic_write_json(lineage_path(run, round_), lineage)
    return lineage


def lineage_markdown(lineage: dict[str, Any]) -> str:
    """The lineage as Markdown, for the Prefect artifact and the model card."""
    contract = lineage["contract"]
    code = lineage["code"]
    lines = [
        f"### Lineage: {lineage['federation']} run `{lineage['run_id']}` round {lineage['round']}", "",
        f"- model sha256 `{lineage['model_sha256'][:16]}…`, parent "
        + (f"`{lineage['parent_model_sha256'][:16]}…`" if lineage.get("parent_model_sha256") else "none (first round)"),
        f"- contract `{contract.get('suite')}` {contract.get('contract_version')}; strategy `{lineage['strategy']}`; "
        f"{round_step(lineage['strategy'], lineage['parameters']['trees_per_round'])}",
        f"- code `{code.get('git_commit') or 'not a git checkout'}`" + (" (uncommitted changes)" if code.get("git_dirty") else ""),
        "- packages: " + ", ".join(f"{k} {v}" for k, v in lineage["packages"].items() if v),
        "", "| market | train rows | test rows | train fingerprint | contract | validation |", "|---|---|---|---|---|---|",
    ]
    for market, m in lineage["markets"].items():
        checks = m.get("validation") or []
        passed = ", ".join(f"{s.get('file')} {s.get('passed')}/{s.get('evaluated')}" for s in checks) or "n/a"
        lines.append(f"| {market} | {m['train_rows']} | {m.get('test_rows')} | "
                     f"`{(m['fingerprint'].get('train') or '')[:12]}` | {m.get('contract_version')} | {passed} |")
    for market, why in lineage.get("left_out", {}).items():
        lines.append(f"| {market} | left out: {why} | | | | |")
    return "\n".join(lines)
