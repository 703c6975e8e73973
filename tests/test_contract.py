"""The predictive-maintenance data contract, run through fedpipe.contract on real C-MAPSS data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedpipe.contract import ValidationSummary, contract_version, load_suite, validate_table
from fedpipe.errors import ConfigError, MarketDataError

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "expectations" / "predictive_maintenance.json"
CMAPSS = Path("/work/shared/datasets/cmapss")  # the NASA text originals
VENDORED = ROOT / "usecases" / "predictive_maintenance" / "data"  # the same rows as parquet, for a clean clone
RAW = ["unit", "cycle", "setting_1", "setting_2", "setting_3"] + [f"sensor_{i}" for i in range(1, 22)]
MARKET, FILE = "market-a", "train_FD001.txt"

pytestmark = pytest.mark.skipif(
    not (CMAPSS / "train_FD001.txt").is_file() and not (VENDORED / "FD001" / "train.parquet").is_file(),
    reason=f"C-MAPSS data found neither in {CMAPSS} nor in {VENDORED}",
)


def labelled_table(subset: str, horizon: int = 30) -> pd.DataFrame:
    """train_<subset> as the contract's labelled training table (the text original if present)."""
    text = CMAPSS / f"train_{subset}.txt"
    if text.is_file():
        df = pd.read_csv(text, sep=r"\s+", header=None, names=RAW)
    else:
        df = pd.read_parquet(VENDORED / subset / "train.parquet", columns=RAW)
    df["rul"] = df.groupby("unit")["cycle"].transform("max") - df["cycle"]
    df["failure_within_horizon"] = (df["rul"] <= horizon).astype("int64")
    return df


@pytest.fixture(scope="module")
def fd001() -> pd.DataFrame:
    return labelled_table("FD001")


@pytest.fixture
def table(fd001: pd.DataFrame) -> pd.DataFrame:
    return fd001.copy()


def validate(df) -> ValidationSummary:
    return validate_table(df, suite_path=SUITE, market=MARKET, file=FILE)


def assert_rejected(summary: ValidationSummary, expectation: str, field: str | None) -> MarketDataError:
    """The summary failed, its first failure is ``expectation`` on ``field``, and the error names all three."""
    assert not summary.success
    assert summary.failures[0]["expectation"] == expectation
    assert summary.failures[0]["field"] == field
    with pytest.raises(MarketDataError) as info:
        summary.raise_for_failure()
    err = info.value
    assert (err.market, err.file, err.field) == (MARKET, FILE, field)
    assert MARKET in str(err) and FILE in str(err)
    if field:
        assert f"field '{field}'" in str(err)
    json.dumps(summary.to_dict())  # JSON-serialisable
    return err


def test_suite_loads_every_expectation_and_states_its_version():
    spec = json.loads(SUITE.read_text())
    suite = load_suite(SUITE)
    assert suite.name == "predictive_maintenance"
    assert len(suite.expectations) == len(spec["expectations"])  # GE drops invalid ones silently
    assert contract_version(SUITE) == "1.1.0"


def test_invalid_expectation_in_suite_is_a_config_error(tmp_path: Path):
    spec = json.loads(SUITE.read_text())
    spec["expectations"].append({"type": "expect_column_values_to_be_purple", "kwargs": {"column": "unit"}})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(spec))
    with pytest.raises(ConfigError, match=rf"expectations\[{len(spec['expectations']) - 1}\]"):
        load_suite(bad)


@pytest.mark.parametrize("subset", ["FD001", "FD002", "FD003", "FD004"])
def test_every_real_subset_passes(subset: str):
    df = labelled_table(subset)
    summary = validate_table(df, suite_path=SUITE, market=MARKET, file=f"train_{subset}.txt")
    assert summary.success, summary.failures
    assert summary.failures == []
    assert summary.n_rows == len(df)
    assert summary.evaluated == summary.passed == len(load_suite(SUITE).expectations)
    assert (summary.suite, summary.contract_version) == ("predictive_maintenance", "1.1.0")
    summary.raise_for_failure()


def test_missing_column(table: pd.DataFrame):
    summary = validate(table.drop(columns="sensor_7"))
    assert_rejected(summary, "expect_table_columns_to_match_set", "sensor_7")
    assert "missing" in summary.failures[0]["problem"]


def test_extra_column(table: pd.DataFrame):
    table["operator_note"] = 1.0
    assert_rejected(validate(table), "expect_table_columns_to_match_set", "operator_note")


def test_text_in_numeric_column(table: pd.DataFrame):
    table["sensor_11"] = table["sensor_11"].astype(object)
    table.loc[[3, 9], "sensor_11"] = "n/a"
    summary = validate(table)
    err = assert_rejected(summary, "expect_column_values_to_be_in_type_list", "sensor_11")
    assert "2 of 20631 values are not numbers" in str(err)
    assert summary.evaluated == 0  # stopped by the pre-check, before GE
    assert "n/a" not in json.dumps(summary.to_dict())


def test_nan_in_sensor(table: pd.DataFrame):
    table.loc[[10, 20, 30], "sensor_4"] = np.nan
    summary = validate(table)
    err = assert_rejected(summary, "expect_column_values_to_not_be_null", "sensor_4")
    assert "3 of 20631 values are null" in str(err)
    assert len(summary.failures) == 1 and "other" not in str(err)


@pytest.mark.parametrize(
    ("column", "value"),
    [("sensor_2", -500.0), ("sensor_7", 0.0), ("setting_2", 3.5), ("cycle", 0)],
)
def test_physically_absurd_value(table: pd.DataFrame, column: str, value: float):
    table.loc[42, column] = value
    summary = validate(table)
    err = assert_rejected(summary, "expect_column_values_to_be_between", column)
    assert "1 of 20631 values outside" in str(err)


def test_summary_carries_no_row_values(table: pd.DataFrame):
    table.loc[42, "sensor_2"] = -500.0
    text = json.dumps(validate(table).to_dict())
    assert "-500" not in text
    assert "partial_unexpected" not in text and "unexpected_list" not in text


def test_only_one_class(table: pd.DataFrame):
    table["failure_within_horizon"] = 0
    summary = validate(table)
    err = assert_rejected(summary, "expect_column_distinct_values_to_contain_set", "failure_within_horizon")
    assert [f["expectation"] for f in summary.failures[1:]] == ["expect_column_mean_to_be_between"]
    assert "1 other expectation failed" in str(err)


def test_label_outside_zero_one(table: pd.DataFrame):
    table.loc[5, "failure_within_horizon"] = 2
    assert_rejected(validate(table), "expect_column_values_to_be_in_set", "failure_within_horizon")


def test_too_few_rows(table: pd.DataFrame):
    summary = validate(table.iloc[::50])  # 413 rows, both classes, still a plausible positive rate
    assert_rejected(summary, "expect_table_row_count_to_be_between", None)
    assert len(summary.failures) == 1
    assert "413 rows" in summary.failures[0]["problem"]


def test_duplicated_unit_cycle(table: pd.DataFrame):
    summary = validate(pd.concat([table, table.iloc[100:104]], ignore_index=True))
    err = assert_rejected(summary, "expect_compound_columns_to_be_unique", "unit, cycle")
    assert "8 of 20635" in str(err)


def test_integer_column_with_float_dtype(table: pd.DataFrame):
    table["unit"] = table["unit"].astype("float64")
    assert_rejected(validate(table), "expect_column_values_to_be_in_type_list", "unit")


def test_not_a_dataframe():
    summary = validate([[1, 2, 3]])
    assert_rejected(summary, "table_is_dataframe", None)
    assert summary.n_rows == 0
