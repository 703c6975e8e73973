"""Load one well's drilling log and split off its deepest rows as the held-out section.

A market folder holds ``well.parquet`` (or ``well.csv`` with a header row) with the columns in ``COLUMNS``, as
written by ``vendor.py``. This module checks only what it needs to build the tables: the file exists and can be
read, the columns are there and hold numbers, and ``depth_m`` (the split) has no missing values. Ranges, nulls and
row counts are the Great Expectations suite's job (``expectations/drilling_efficiency.json``). Failures raise
:class:`~fedpipe.errors.MarketDataError` naming the market, the file and the field; bad options raise
:class:`~fedpipe.errors.ConfigError`.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from fedpipe.errors import ConfigError, MarketDataError
from fedpipe.usecase import MarketData

DEFAULTS_FILE = Path(__file__).with_name("defaults.toml")
LABEL = "rop_m_per_h"
COLUMNS = ["depth_m", "wob_kkgf", "standpipe_pressure_kpa", "torque_knm", LABEL, "rpm", "mud_flow_l_per_min",
           "mud_density_g_per_cm3", "bit_diameter_mm", "hookload_kkgf", "tvd_m", "gamma_api"]


def read_defaults() -> dict[str, Any]:
    """The use case defaults from ``defaults.toml`` (read afresh on every call)."""
    with DEFAULTS_FILE.open("rb") as handle:
        return tomllib.load(handle)


def load_market(market: str, location: Path, options: Mapping[str, Any] | None = None) -> MarketData:
    """Read one well and split it by depth.

    Args:
        market: market (well) name, for error messages.
        location: folder holding ``well.parquet`` (or ``well.csv``).
        options: ``holdout`` (fraction in (0, 0.5]), ``subsample`` (fraction of training rows kept, in (0, 1])
            and ``seed``; missing keys come from ``defaults.toml``.

    Returns:
        MarketData: ``test`` is the deepest ``holdout`` share of the rows, ``train`` the rows above it
        (subsampled if asked); both sorted by depth, with the columns ``COLUMNS``.
    """
    opts = check_options(market, options or {})
    location = Path(location)
    if not location.is_dir():
        raise MarketDataError(market, location, None,
                              "is not a folder" if location.exists() else "market data folder not found")
    table, path = _read_well(market, location)
    n_test = max(1, int(round(opts["holdout"] * len(table))))
    train, test = table.iloc[:-n_test], table.iloc[-n_test:].reset_index(drop=True)
    if opts["subsample"] < 1.0:
        keep = np.random.default_rng(opts["seed"]).random(len(train)) < opts["subsample"]
        train = train[keep]
    return MarketData(train=train.reset_index(drop=True), test=test, sources={"train": path, "test": path})


def check_options(market: str, options: Mapping[str, Any]) -> dict[str, Any]:
    opts = {**read_defaults(), **options}
    where = f"options of market '{market}'"
    number = lambda v: isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)  # noqa: E731
    if not number(opts["holdout"]) or not 0.0 < opts["holdout"] <= 0.5:
        raise ConfigError(where, "holdout", f"must be a fraction in (0, 0.5], got {opts['holdout']!r}")
    if not number(opts["subsample"]) or not 0.0 < opts["subsample"] <= 1.0:
        raise ConfigError(where, "subsample", f"must be a fraction in (0, 1], got {opts['subsample']!r}")
    if not isinstance(opts["seed"], (int, np.integer)) or isinstance(opts["seed"], bool) or opts["seed"] < 0:
        raise ConfigError(where, "seed", f"must be a whole number >= 0, got {opts['seed']!r}")
    return {"holdout": float(opts["holdout"]), "subsample": float(opts["subsample"]), "seed": int(opts["seed"])}


def _read_well(market: str, location: Path) -> tuple[pd.DataFrame, Path]:
    path = location / "well.parquet"
    if not path.exists() and (location / "well.csv").exists():
        path = location / "well.csv"
    if not path.is_file():
        raise MarketDataError(market, path, None, "not found (nor well.csv)" if not path.exists() else "is not a file")
    if path.stat().st_size == 0:
        raise MarketDataError(market, path, None, "empty (0 bytes)")
    try:
        with open(path, "rb") as handle:
            raw = pd.read_parquet(handle, engine="pyarrow") if path.suffix == ".parquet" else pd.read_csv(handle)
    except Exception as exc:  # corrupt bytes surface as many exception types
        raise MarketDataError(market, path, None, f"unreadable file: {type(exc).__name__}: {exc}") from exc
    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing:
        raise MarketDataError(market, path, missing[0], f"required column is missing ({len(missing)} missing: "
                                                        f"{', '.join(missing)})")
    if len(raw) == 0:
        raise MarketDataError(market, path, None, "empty (header but no rows)")
    table = pd.DataFrame({c: _numbers(market, path, c, raw[c]) for c in COLUMNS})
    if table["depth_m"].isna().any():
        raise MarketDataError(market, path, "depth_m", f"{int(table['depth_m'].isna().sum())} missing values; "
                                                       "the held-out split needs every depth")
    return table.sort_values("depth_m", kind="stable", ignore_index=True), path


def _numbers(market: str, path: Path, column: str, values: pd.Series) -> np.ndarray:
    if pd.api.types.is_bool_dtype(values.dtype):
        raise MarketDataError(market, path, column, f"has type {values.dtype}; expected numbers")
    parsed = pd.to_numeric(values, errors="coerce")
    bad = parsed.isna() & values.notna()
    if bad.any():
        raise MarketDataError(market, path, column, f"{int(bad.sum())} non-numeric values "
                                                    f"(e.g. {values[bad].iloc[0]!r}); expected numbers")
    return parsed.to_numpy(dtype="float64", na_value=np.nan)
