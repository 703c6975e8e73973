"""The second objective on the same data: remaining useful life, capped (regression, ``reg:squarederror``).

Chosen with ``[usecase] task = "rul"`` in a federation file. The target is ``min(rul, rul_cap)`` (cap 125 cycles
by default, the usual piecewise-linear RUL of the C-MAPSS literature: early in life an engine's RUL is not
observable from its sensors). Metrics are RMSE and MAE in cycles. The maintenance policy is the classifier's,
driven by the prediction: maintain an engine when its predicted RUL is at most ``horizon`` cycles.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from .data import read_defaults
from .roi import maintenance_value

RUL_CAP = 125


def capped_rul(table: pd.DataFrame, options: Mapping[str, Any]) -> np.ndarray:
    """The regression target: ``rul`` capped at ``options["rul_cap"]`` (default 125) cycles."""
    cap = options.get("rul_cap", RUL_CAP)
    if isinstance(cap, bool) or not isinstance(cap, (int, float)) or cap <= 0:
        raise ValueError(f"usecase option rul_cap must be a number of cycles > 0, got {cap!r}")
    return np.minimum(table["rul"].to_numpy(dtype="float64"), float(cap))


def rul_value(test_table: pd.DataFrame, predicted_rul: np.ndarray, params: Mapping[str, Any] | None = None) -> dict:
    """Business value of maintaining the engines whose predicted RUL is within the horizon."""
    horizon = (params or {}).get("horizon", read_defaults()["horizon"])
    flagged = (np.asarray(predicted_rul, dtype="float64") <= horizon).astype("float64")
    return maintenance_value(test_table, flagged, {**(params or {}), "threshold": 0.5})


RUL_TASK = {"label": "rul", "objective": "reg:squarederror", "target_fn": capped_rul, "business_value": rul_value}
