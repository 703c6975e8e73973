"""The cross-market schema check run before round 1.

Each market describes its tables' *shape* (:func:`describe_table`: column names, dtypes, row count, and for each
category column of the contract how many values fall outside the contract's set; never a value) and the contract
version it validates with. The centre compares every description with its own copy of the contract
(:func:`compare`) and stops a market that differs before it trains, with a readable diff such as
``FD003: train.parquet: column 'sensor_4' dtype str, contract float64``.

Public API: :func:`contract_schema`, :func:`describe_table`, :func:`compare`, :func:`stop_reason`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd


def contract_schema(suite_path: str | Path) -> dict[str, Any]:
    """What the contract says a table looks like: columns with accepted dtypes, category sets, version.

    Read from the suite JSON directly (no Great Expectations import): the centre needs only the declarations.
    """
    raw = Path(suite_path).read_bytes()
    spec = json.loads(raw)
    columns: dict[str, list[str]] = {}
    categories: dict[str, list] = {}
    for exp in spec.get("expectations", []):
        kind, kwargs = exp["type"], exp.get("kwargs", {})
        if kind == "expect_table_columns_to_match_set":
            columns = {c: columns.get(c, []) for c in kwargs["column_set"]}
        elif kind == "expect_column_values_to_be_in_type_list":
            columns[kwargs["column"]] = list(kwargs["type_list"] or [])
        elif kind == "expect_column_values_to_be_in_set":
            categories[kwargs["column"]] = list(kwargs["value_set"])
    return {
        "suite": spec["name"],
        "contract_version": spec["meta"]["contract_version"],
        "contract_sha256": hashlib.sha256(raw).hexdigest(),
        "columns": columns,
        "categories": categories,
    }


def describe_table(table: pd.DataFrame, contract: dict[str, Any]) -> dict[str, Any]:
    """A table's shape as the market may share it: dtypes, rows, out-of-set counts per category column.

    Runs inside the market. Category columns report only how many non-null values are outside the
    contract's set: no value, not even which categories occur.
    """
    outside = {}
    for column, allowed in contract["categories"].items():
        if column in table.columns:
            values = table[column]
            try:
                outside[column] = int((~values.isin(allowed) & values.notna()).sum())
            except TypeError:  # unhashable or incomparable values: all of them are outside
                outside[column] = int(values.notna().sum())
    return {"rows": int(len(table)), "columns": {str(c): str(t) for c, t in table.dtypes.items()},
            "categories_outside": outside}


def _accepts(type_list: list[str], dtype: str) -> bool:
    # GE names pandas' nullable dtypes by class ("Int64Dtype"); str() of the dtype is "Int64".
    return not type_list or dtype in {t.removesuffix("Dtype") for t in type_list} | set(type_list)


def compare(report: dict[str, Any], contract: dict[str, Any]) -> list[str]:
    """Differences between one market's report and the centre's contract, one readable line each.

    An empty list means the market may train. ``report`` is what the market sent: ``market``,
    ``contract_version``, ``contract_sha256`` and ``tables`` (``{name: {"file", "rows", "columns",
    "categories_outside"}}``).
    """
    market = report.get("market", "?")
    diffs = []
    if report.get("contract_version") != contract["contract_version"]:
        diffs.append(f"{market}: validates with contract {contract['suite']} {report.get('contract_version')}, "
                     f"the federation uses {contract['contract_version']}")
    elif report.get("contract_sha256") not in (None, contract["contract_sha256"]):
        diffs.append(f"{market}: contract {contract['suite']} {contract['contract_version']} differs from the "
                     "centre's copy with the same version number (edited without a version bump)")
    for name, table in sorted(report.get("tables", {}).items()):
        where = f"{market}: {table.get('file', name)}"
        columns = table.get("columns", {})
        for column, type_list in contract["columns"].items():
            if column not in columns:
                diffs.append(f"{where}: missing column '{column}'")
            elif not _accepts(type_list, columns[column]):
                diffs.append(f"{where}: column '{column}' dtype {columns[column]}, contract {type_list[0]}"
                             + (f" (or {', '.join(type_list[1:])})" if len(type_list) > 1 else ""))
        diffs += [f"{where}: column '{c}' is not in the contract" for c in columns if c not in contract["columns"]]
        for column, count in sorted(table.get("categories_outside", {}).items()):
            if count:
                diffs.append(f"{where}: column '{column}': {count} values outside the contract's category set "
                             f"{contract['categories'].get(column)}")
    return diffs


def stop_reason(market: str, diffs: list[str], contract: dict[str, Any]) -> str:
    """The reason the round records for a market stopped by the schema check."""
    listed = "; ".join(d.removeprefix(f"{market}: ") for d in diffs)
    return (f"market '{market}': stopped before round 1, schema differs from contract {contract['suite']} "
            f"{contract['contract_version']}: {listed}")


def describe_market(site, data) -> dict[str, Any]:
    """A market's schema report for the centre (runs in the market): contract version, table shapes, and the
    content hashes lineage records. ``site`` is a :class:`fedpipe.market.MarketSite`, ``data`` its MarketData.
    """
    from fedpipe.market import fingerprint, table_fingerprint

    contract = contract_schema(site.suite_path)
    tables = {}
    for name in ("train", "test"):
        table = getattr(data, name)
        tables[name] = {"file": Path(data.sources.get(name, name)).name, **describe_table(table, contract),
                        "fingerprint": table_fingerprint(table)}
    sources = [Path(p) for p in data.sources.values() if Path(p).is_file()]
    return {"market": site.market, "suite": contract["suite"], "contract_version": contract["contract_version"],
            "contract_sha256": contract["contract_sha256"], "tables": tables,
            "files_fingerprint": fingerprint(sources) if sources else None}


def check_markets(run) -> tuple[list[str], dict[str, str]]:
    """The centre's side (``run`` is a :class:`fedpipe.central.Run`): read each market's schema report from the
    exchange (round 0 status notes), compare it with the contract, and split markets into those that may train
    and those stopped with a reason. Writes ``schema-check.json`` in the run folder (reports, diffs, verdicts).
    """
    from datetime import datetime, timezone

    from fedpipe.market import EXPECTATIONS
    from fedpipe.storage import atomic_write_json
    from fedpipe.usecase import get_usecase

    contract = contract_schema(EXPECTATIONS / f"{get_usecase(run.federation.usecase).suite}.json")
    allowed, stopped, reports, diffs = [], {}, {}, {}
    for market in run.federation.markets:
        path = run.exchange.status(0, market)
        try:
            note = json.loads(run.exchange.get(path)) if run.exchange.exists(path) else None
        except (ValueError, OSError):
            note = None
        if not note or note.get("status") != "described":
            why = str((note or {}).get("reason") or "sent no schema report").removeprefix(f"market '{market}': ")
            stopped[market] = f"market '{market}': stopped before round 1: {why}"
            continue
        reports[market] = note["schema"]
        diffs[market] = compare(note["schema"], contract)
        if diffs[market]:
            stopped[market] = stop_reason(market, diffs[market], contract)
        else:
            allowed.append(market)
    atomic_write_json(run.root / "schema-check.json", {
        "checked": datetime.now(timezone.utc).isoformat(), "contract": contract, "allowed": allowed,
        "stopped": stopped, "diffs": diffs, "reports": reports})
    return allowed, stopped
