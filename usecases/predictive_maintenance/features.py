"""Model inputs for predictive maintenance: the same 67 columns, in the same order, in every market.

``setting_1..3``, ``sensor_1..21``, ``cycle``, then per engine the rolling mean (``sensor_k_mean``) and standard
deviation (``sensor_k_std``) of each sensor over its last ``window`` cycles, computed within the unit in cycle
order (``min_periods=1``; the standard deviation of a single cycle, NaN, is set to 0). The label and ``rul`` are
never inputs. Rows come back in the order, and with the index, of the table passed in.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from .data import SENSORS, SETTINGS, read_defaults

FEATURE_COLUMNS = [
    *SETTINGS,
    *SENSORS,
    "cycle",
    *(f"{sensor}_mean" for sensor in SENSORS),
    *(f"{sensor}_std" for sensor in SENSORS),
]


def build_features(table: pd.DataFrame, window: int | None = None) -> pd.DataFrame:
    """Build the model inputs of a train or test table.

    Args:
        table: rows with ``unit``, ``cycle``, ``setting_1..3`` and ``sensor_1..21``, in any order.
        window: rolling window in cycles (>= 1); ``None`` takes ``window`` from ``defaults.toml``.

    Returns:
        float64 DataFrame with columns ``FEATURE_COLUMNS`` and the index of ``table``.
    """
    window = read_defaults()["window"] if window is None else window
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be a whole number of cycles >= 1, got {window!r}")
    missing = [column for column in ["unit", "cycle", *SETTINGS, *SENSORS] if column not in table.columns]
    if missing:
        raise KeyError(f"build_features: table lacks column(s) {', '.join(missing)}")

    unit = table["unit"].to_numpy()
    order = np.lexsort((table["cycle"].to_numpy(), unit))  # by unit, then cycle; stable
    by_cycle = pd.DataFrame(table[SENSORS].to_numpy(dtype="float64")[order], columns=SENSORS)
    rolling = by_cycle.groupby(unit[order], sort=False, dropna=False).rolling(int(window), min_periods=1)
    mean, std = rolling.mean(), rolling.std()  # ddof=1
    rows = mean.index.get_level_values(-1).to_numpy()  # positions in by_cycle

    std = std.to_numpy()
    stats = np.empty((len(table), 2 * len(SENSORS)))
    stats[order[rows]] = np.hstack([mean.to_numpy(), np.where(np.isnan(std), 0.0, std)])
    own = table[[*SETTINGS, *SENSORS, "cycle"]].to_numpy(dtype="float64")
    return pd.DataFrame(np.hstack([own, stats]), columns=FEATURE_COLUMNS, index=table.index)


def model_inputs(table: pd.DataFrame, options: Mapping[str, Any]) -> pd.DataFrame:
    """The use-case contract's ``features(table, options)``: the federation's ``[usecase] window`` wins."""
    return build_features(table, window=options.get("window"))
