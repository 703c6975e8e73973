"""Model inputs for ROP regression: the same nine drilling parameters, in the same order, in every well.

Depth is left out on purpose, measured and true vertical (``tvd_m``) alike: each well's held-out section lies
deeper than anything it trained on, and trees cannot extrapolate depth; across wells depth mostly tells the model
which well a row came from, so it keeps the wells apart instead of letting them learn from each other. Measured
(benchmarks/quality.py, pooled model vs each well alone, held-out RMSE): with ``tvd_m`` the pooled model was worse
than local-only on F-5 and F-7; without it, better on all four wells. ROP (the label) is never an input.
"""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

FEATURE_COLUMNS = ["wob_kkgf", "rpm", "torque_knm", "standpipe_pressure_kpa", "mud_flow_l_per_min",
                   "mud_density_g_per_cm3", "bit_diameter_mm", "hookload_kkgf", "gamma_api"]
# The settings the recommender may change (roi.drilling_value); the rest are held at their observed values.
CONTROLS = ["wob_kkgf", "rpm"]


def model_inputs(table: pd.DataFrame, options: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The use-case contract's ``features(table, options)``: float64 columns ``FEATURE_COLUMNS``, same index."""
    missing = [c for c in FEATURE_COLUMNS if c not in table.columns]
    if missing:
        raise KeyError(f"drilling features: table lacks column(s) {', '.join(missing)}")
    return table[FEATURE_COLUMNS].astype("float64")
