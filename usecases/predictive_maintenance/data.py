"""Load one market's C-MAPSS tables and derive the label.

A market folder holds ``train.parquet`` and ``test.parquet`` (or ``train.csv`` / ``test.csv`` with a header row
when there is no Parquet). Both have ``unit``, ``cycle``, ``setting_1..3`` and ``sensor_1..21``; the test table
also has ``rul``, the true remaining useful life at each row.

This module checks only what it needs to build the tables: the files exist, are no larger than ``max_file_mb``
and can be read (CSV as UTF-8, comma-separated), exactly the contract's columns are there (an extra column is an
error, never dropped silently: it may hold data that was not meant to be shared with the model) and hold finite
numbers, and ``unit``, ``cycle`` and ``rul`` are whole numbers with no missing values (the label needs
them). Range, null and class checks belong to the Great Expectations suite ``expectations/predictive_maintenance.json``.
Every failure raises :class:`~fedpipe.errors.MarketDataError` naming the market, the file and the field
(``field`` is ``None`` when the whole folder or file is at fault). A bad option raises
:class:`~fedpipe.errors.ConfigError`.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from fedpipe.errors import ConfigError, MarketDataError
from fedpipe.usecase import MarketData

DEFAULTS_FILE = Path(__file__).with_name("defaults.toml")

SETTINGS = [f"setting_{i}" for i in range(1, 4)]
SENSORS = [f"sensor_{i}" for i in range(1, 22)]
RAW_COLUMNS = ["unit", "cycle", *SETTINGS, *SENSORS]
INT_COLUMNS = ("unit", "cycle", "rul")  # needed whole and complete to derive the label
LABEL = "failure_within_horizon"

_INT32 = np.iinfo(np.int32)


def read_defaults() -> dict[str, Any]:
    """Return the use case defaults from ``defaults.toml`` (read afresh on every call)."""
    with DEFAULTS_FILE.open("rb") as handle:
        return tomllib.load(handle)


def load_market(market: str, location: Path, options: Mapping[str, Any] | None = None) -> MarketData:
    """Read one market's train and test tables and label them.

    Args:
        market: market name, used in error messages.
        location: folder holding ``train.parquet`` and ``test.parquet`` (or ``.csv``).
        options: ``horizon`` (int >= 1), ``subsample`` (fraction of training engines kept, in (0, 1]) and
            ``seed`` (int >= 0, which engines are kept); missing keys come from ``defaults.toml``.

    Returns:
        MarketData whose ``train`` has the raw columns plus ``rul`` and ``failure_within_horizon``, and whose
        ``test`` has the raw columns, the true ``rul`` and ``failure_within_horizon``; rows sorted by unit, cycle.
    """
    opts = check_options(market, options or {})
    location = Path(location)
    if not location.is_dir():
        problem = "is not a folder" if location.exists() else "market data folder not found"
        raise MarketDataError(market, location, None, problem)
    if not os.access(location, os.R_OK | os.X_OK):
        raise MarketDataError(market, location, None, "market data folder is not readable (permission denied)")
    limit = int(opts["max_file_mb"] * 2**20)
    train, train_path = _read_table(market, location, "train", RAW_COLUMNS, limit)
    test, test_path = _read_table(market, location, "test", [*RAW_COLUMNS, "rul"], limit)
    train = subsample_units(train, opts["subsample"], opts["seed"])
    return MarketData(
        train=label_train(train, opts["horizon"]),
        test=label_test(test, opts["horizon"]),
        sources={"train": train_path, "test": test_path},
    )


def subsample_units(table: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """Keep ``round(fraction * units)`` whole engines (at least one), drawn with ``seed``."""
    if fraction >= 1.0:
        return table
    units = np.unique(table["unit"].to_numpy())
    n_keep = max(1, int(round(fraction * len(units))))
    keep = np.random.default_rng(seed).choice(units, size=n_keep, replace=False)
    return table[table["unit"].isin(keep)].reset_index(drop=True)


def label_train(table: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """Add ``rul`` = last cycle of the unit - cycle (run-to-failure data) and the horizon label."""
    rul = table.groupby("unit")["cycle"].transform("max") - table["cycle"]
    return table.assign(rul=rul.astype("int32"), **{LABEL: (rul <= horizon).astype("int32")})


def label_test(table: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """Add the horizon label from the true ``rul``."""
    return table.assign(**{LABEL: (table["rul"] <= horizon).astype("int32")})


def check_options(market: str, options: Mapping[str, Any]) -> dict[str, Any]:
    opts = {**read_defaults(), **options}
    where = f"options of market '{market}'"

    def is_int(value: Any) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))

    if not is_int(opts["horizon"]) or opts["horizon"] < 1:
        raise ConfigError(where, "horizon", f"must be a whole number of cycles >= 1, got {opts['horizon']!r}")
    subsample = opts["subsample"]
    if not (is_int(subsample) or isinstance(subsample, (float, np.floating))) or not 0.0 < subsample <= 1.0:
        raise ConfigError(where, "subsample", f"must be a fraction in (0, 1], got {subsample!r}")
    if not is_int(opts["seed"]) or opts["seed"] < 0:
        raise ConfigError(where, "seed", f"must be a whole number >= 0, got {opts['seed']!r}")
    limit = opts.get("max_file_mb", 1024)
    if not isinstance(limit, (int, float, np.integer, np.floating)) or isinstance(limit, bool) or not limit > 0:
        raise ConfigError(where, "max_file_mb", f"must be a size in MB > 0, got {limit!r}")
    return {"horizon": int(opts["horizon"]), "subsample": float(subsample), "seed": int(opts["seed"]),
            "max_file_mb": float(limit)}


def _read_table(market: str, location: Path, name: str, columns: list[str],
                max_bytes: int = 2**30) -> tuple[pd.DataFrame, Path]:
    """Read ``<name>.parquet`` (or ``<name>.csv``), keep ``columns`` in order, typed; rows sorted by unit, cycle."""
    path = location / f"{name}.parquet"
    if not path.exists() and (location / f"{name}.csv").exists():
        path = location / f"{name}.csv"
    if not path.exists():
        raise MarketDataError(market, path, None, f"not found (nor {name}.csv)")
    if not path.is_file():
        raise MarketDataError(market, path, None, "is not a file")
    if path.stat().st_size == 0:
        raise MarketDataError(market, path, None, "empty (0 bytes)")
    if path.stat().st_size > max_bytes:  # before reading: a runaway export must not exhaust the market's memory
        raise MarketDataError(market, path, None, f"{path.stat().st_size / 2**20:,.3g} MB, larger than the "
                              f"{max_bytes / 2**20:.3g} MB limit (use case option max_file_mb)")
    try:
        # Read through a Python file handle: one read path for every format, and visible to audit hooks.
        with open(path, "rb") as handle:
            raw = pd.read_parquet(handle, engine="pyarrow") if path.suffix == ".parquet" else \
                pd.read_csv(handle, encoding="utf-8")
    except UnicodeDecodeError as exc:
        utf16 = " (it looks like UTF-16)" if exc.object[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise MarketDataError(market, path, None, f"not UTF-8 text{utf16}: byte {exc.start} cannot be "
                              "decoded; save the CSV as UTF-8") from exc
    except pd.errors.EmptyDataError as exc:
        raise MarketDataError(market, path, None, "empty (no header, no rows)") from exc
    except Exception as exc:  # corrupt bytes surface as many exception types (ArrowInvalid, OSError, ParserError, ...)
        kind = "Parquet" if path.suffix == ".parquet" else "CSV"
        raise MarketDataError(market, path, None, f"unreadable {kind} file: {type(exc).__name__}: {exc}") from exc

    missing = [column for column in columns if column not in raw.columns]
    extra = [str(column) for column in raw.columns if column not in columns]
    if missing and len(raw.columns) == 1 and path.suffix == ".csv":
        sep = next((s for s in (";", "\t", "|") if s in str(raw.columns[0])), None)
        if sep:
            raise MarketDataError(market, path, None, f"one column only: the file looks {sep!r}-separated; "
                                  "expected comma-separated values with a header row")
    if missing:
        also = f" ({len(missing)} required columns missing: {', '.join(missing)})" if len(missing) > 1 else ""
        renamed = f"; found column(s) not in the contract: {', '.join(map(repr, extra))} (renamed?)" if extra else ""
        raise MarketDataError(market, path, missing[0], f"required column is missing{also}{renamed}")
    if extra:  # never dropped silently: an extra column may be data that was not meant to be there
        raise MarketDataError(market, path, extra[0], f"column not in the data contract (the file must hold "
                              f"exactly {', '.join(columns[:3])}, ...); remove it or propose a contract change")
    if len(raw) == 0:
        raise MarketDataError(market, path, None, "empty (header but no rows)")

    table = pd.DataFrame(
        {column: _coerce(market, path, column, raw[column], int_=column in INT_COLUMNS) for column in columns}
    )
    return table.sort_values(["unit", "cycle"], kind="stable", ignore_index=True), path


def _coerce(market: str, path: Path, column: str, values: pd.Series, int_: bool) -> np.ndarray:
    """Return ``values`` as float64 (or int32 when ``int_``), or raise naming the column and what is wrong."""
    expected = "whole numbers" if int_ else "numbers"
    if pd.api.types.is_integer_dtype(values.dtype) or pd.api.types.is_float_dtype(values.dtype):
        numbers = values.to_numpy(dtype="float64", na_value=np.nan)
    elif pd.api.types.is_object_dtype(values.dtype) or pd.api.types.is_string_dtype(values.dtype):
        try:
            parsed = pd.to_numeric(values, errors="coerce")
        except (TypeError, ValueError) as exc:
            raise MarketDataError(market, path, column, f"holds values that are not {expected}: {exc}") from exc
        bad = parsed.isna() & values.notna()
        if bad.any():
            # Where, never what: this message may leave the market, a cell's value may not.
            count, first = int(bad.sum()), int(np.flatnonzero(bad.to_numpy())[0])
            raise MarketDataError(
                market, path, column,
                f"{count} non-numeric value{'s' * (count > 1)} (first at row {first}); expected {expected}",
            )
        numbers = parsed.to_numpy(dtype="float64", na_value=np.nan)
    else:
        raise MarketDataError(market, path, column, f"has type {values.dtype}; expected {expected}")
    infinite = np.isinf(numbers)
    if infinite.any():
        count = int(infinite.sum())
        raise MarketDataError(market, path, column, f"{count} infinite value{'s' * (count > 1)}; expected finite {expected}")
    if not int_:
        return numbers

    problems = {
        "missing": np.isnan(numbers),
        "non-integer": np.isfinite(numbers) & (numbers != np.round(numbers)),
        "out-of-int32-range": ~np.isnan(numbers) & ((numbers < _INT32.min) | (numbers > _INT32.max)),
    }
    for what, mask in problems.items():
        if mask.any():
            count, first = int(mask.sum()), int(np.flatnonzero(mask)[0])
            noun = "value" if count == 1 else "values"
            raise MarketDataError(market, path, column, f"{count} {what} {noun} (first at row {first}); expected {expected}")
    return numbers.astype("int32")


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value, so messages read ``4.5`` rather than ``np.float64(4.5)``."""
    return value.item() if isinstance(value, np.generic) else value
