"""Federation-level ROI from the per-market figures the markets report (never from their rows).

ROI = savings / programme cost, where savings = cost with no model (run to failure) - cost with the model, and
the programme cost is what acting on the model costs. Summing before dividing gives the federation's ROI;
averaging the markets' ROIs would weight a ten-engine market like a thousand-engine one.
"""

from __future__ import annotations

from typing import Iterable, Mapping


def ratio(savings: float, programme_cost: float) -> float:
    return float(savings / programme_cost) if programme_cost > 0 else 0.0


def federation_roi(markets: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Sum the markets' cost figures and take the ratio of the sums."""
    totals = {"cost_no_model": 0.0, "cost_model": 0.0, "savings": 0.0, "programme_cost": 0.0,
              "savings_local_only": 0.0}
    for row in markets:
        for key in totals:
            totals[key] += float(row[key])
    totals["roi"] = ratio(totals["savings"], totals["programme_cost"])
    totals["savings_vs_local_only"] = totals["savings"] - totals["savings_local_only"]
    return totals
