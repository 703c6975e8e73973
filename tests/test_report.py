"""The round summary and story the Prefect artifacts show, from tables built by fedpipe.central."""

from __future__ import annotations

import pytest

from fedpipe.central import round_tables
from fedpipe.errors import FedpipeError
from fedpipe.report import round_markdown, round_summary, write_report


def _evaluation(mae_fed, mae_local, savings_fed, savings_local, programme=100.0):
    def model(mae, savings):
        return {"metrics": {"mae": mae, "rmse": mae * 1.3, "r2": 0.4, "rows": 50},
                "value": {"cost_no_model": 1000.0, "cost_model": 1000.0 - savings, "savings": savings,
                          "programme_cost": programme, "roi": savings / programme}}
    return {"train_rows": 200, "federated": model(mae_fed, savings_fed), "local_only": model(mae_local, savings_local)}


def test_round_summary_compares_federated_with_local_only_per_market_and_in_total():
    metrics, roi = round_tables(3, {"A": _evaluation(5.0, 6.0, 300.0, 100.0), "B": _evaluation(9.0, 8.0, 50.0, 80.0)})
    summary = round_summary(metrics, roi).set_index("market")
    assert summary.loc["A", "federated better"] == True and summary.loc["B", "federated better"] == False  # noqa: E712
    assert summary.loc["A", "ROI federated"] == pytest.approx(3.0)
    assert summary.loc["B", "savings vs local-only"] == pytest.approx(-30.0)
    assert summary.loc["federation", "ROI federated"] == pytest.approx(350.0 / 200.0)  # sums before dividing
    assert summary.loc["federation", "savings vs local-only"] == pytest.approx(170.0)

    story = round_markdown("volve", 3, summary.reset_index(), {"C": "well.parquet: field 'rpm': missing"})
    assert "round 3" in story and "better than local-only in 1: A" in story
    assert "**C**: well.parquet: field 'rpm': missing" in story and "| federation |" in story


def test_a_folder_without_a_finished_run_is_a_clear_error(tmp_path):
    with pytest.raises(FedpipeError, match="not a finished run folder.*metrics.parquet"):
        write_report(tmp_path)
