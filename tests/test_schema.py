"""The cross-market schema check on real C-MAPSS tables and the real contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedpipe import schema
from fedpipe.config import load_federation
from fedpipe.market import MarketSite, load_data
from fedpipe.storage import Exchange

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "expectations" / "predictive_maintenance.json"


@pytest.fixture(scope="module")
def site_and_data(tmp_path_factory):
    federation = load_federation(REPO / "federations" / "cmapss.toml")
    site = MarketSite(federation, "FD004", Exchange(tmp_path_factory.mktemp("exchange")))
    return site, load_data(site)


def test_contract_schema_reads_columns_types_categories_and_version():
    contract = schema.contract_schema(SUITE)
    assert contract["contract_version"] == "1.1.0"
    assert len(contract["columns"]) == 28 and contract["columns"]["sensor_4"][0] == "float64"
    assert contract["categories"] == {"failure_within_horizon": [0, 1], "setting_3": [60.0, 100.0]}


def test_a_conforming_market_has_no_diff(site_and_data):
    site, data = site_and_data
    report = schema.describe_market(site, data)
    assert schema.compare(report, schema.contract_schema(SUITE)) == []
    assert report["tables"]["train"]["rows"] == len(data.train)
    assert "values" not in str(report["tables"]["train"]["categories_outside"])  # counts only


def test_dtype_missing_extra_and_category_differences_read_as_a_diff(site_and_data):
    site, data = site_and_data
    contract = schema.contract_schema(SUITE)
    train = data.train.copy()
    train["sensor_4"] = train["sensor_4"].astype(object)
    train = train.drop(columns=["sensor_9"]).assign(humidity=1.0)
    train.loc[train.index[:3], "setting_3"] = 42.0
    tables = {"train": {"file": "train.parquet", **schema.describe_table(train, contract)}}
    diffs = schema.compare({"market": "FD004", "contract_version": "1.1.0", "tables": tables}, contract)
    assert diffs[0].startswith("FD004: train.parquet: column 'sensor_4' dtype object, contract float64 (or float32")
    assert diffs[1:] == [
        "FD004: train.parquet: missing column 'sensor_9'",
        "FD004: train.parquet: column 'humidity' is not in the contract",
        "FD004: train.parquet: column 'setting_3': 3 values outside the contract's category set [60.0, 100.0]",
    ]
    reason = schema.stop_reason("FD004", diffs, contract)
    assert reason.startswith("market 'FD004': stopped before round 1, schema differs from contract "
                             "predictive_maintenance 1.1.0: train.parquet: column 'sensor_4' dtype object")


def test_another_contract_version_or_an_edited_contract_is_a_diff(site_and_data):
    site, data = site_and_data
    contract = schema.contract_schema(SUITE)
    report = schema.describe_market(site, data)
    assert schema.compare({**report, "contract_version": "1.0.0"}, contract) == [
        "FD004: validates with contract predictive_maintenance 1.0.0, the federation uses 1.1.0"]
    edited = schema.compare({**report, "contract_sha256": "0" * 64}, contract)
    assert edited and "edited without a version bump" in edited[0]


def test_fingerprints_change_with_one_value_and_only_for_that_table(site_and_data):
    site, data = site_and_data
    before = schema.describe_market(site, data)["tables"]
    data.train.loc[data.train.index[5], "sensor_2"] += 0.001
    try:
        after = schema.describe_market(site, data)["tables"]
    finally:
        data.train.loc[data.train.index[5], "sensor_2"] -= 0.001
    assert after["train"]["fingerprint"] != before["train"]["fingerprint"]
    assert after["test"]["fingerprint"] == before["test"]["fingerprint"]
