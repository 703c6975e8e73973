"""fedpipe.roi: the federation's ROI is the ratio of the summed figures, not the mean of the markets' ROIs."""

from __future__ import annotations

import pytest

from fedpipe.roi import federation_roi, ratio


def _market(savings, programme_cost, cost_no_model, savings_local_only=0.0):
    return {"cost_no_model": cost_no_model, "cost_model": cost_no_model - savings, "savings": savings,
            "programme_cost": programme_cost, "savings_local_only": savings_local_only}


def test_federation_roi_sums_then_divides():
    big = _market(savings=1_000_000, programme_cost=500_000, cost_no_model=2_000_000, savings_local_only=800_000)
    small = _market(savings=30_000, programme_cost=10_000, cost_no_model=50_000, savings_local_only=40_000)
    # Market ROIs are 2.0 and 3.0: their mean (2.5) would weight the small market like the big one.
    total = federation_roi([big, small])
    assert total["roi"] == pytest.approx(1_030_000 / 510_000)
    assert total["roi"] != pytest.approx((2.0 + 3.0) / 2)
    assert total["savings"] == 1_030_000
    assert total["programme_cost"] == 510_000
    assert total["cost_no_model"] == 2_050_000
    assert total["cost_model"] == 2_050_000 - 1_030_000
    assert total["savings_local_only"] == 840_000
    assert total["savings_vs_local_only"] == 1_030_000 - 840_000


def test_zero_programme_cost_gives_zero_roi():
    assert ratio(0.0, 0.0) == 0.0
    assert ratio(5.0, 0.0) == 0.0
    total = federation_roi([_market(savings=0, programme_cost=0, cost_no_model=250_000)])
    assert total["roi"] == 0.0
    assert federation_roi([])["roi"] == 0.0


def test_negative_savings_give_negative_roi():
    total = federation_roi([_market(savings=-16_000, programme_cost=16_000, cost_no_model=0)])
    assert total["roi"] == pytest.approx(-1.0)


def test_a_market_row_missing_a_figure_is_an_error():
    row = _market(savings=1, programme_cost=1, cost_no_model=1)
    del row["programme_cost"]
    with pytest.raises(KeyError, match="programme_cost"):
        federation_roi([row])
