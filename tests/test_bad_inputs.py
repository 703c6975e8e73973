"""The bad-input catalogue: each broken market folder fails with a clear error naming market, file and field.

Every case goes end to end through what a market runs, fedpipe.market.load_data then validate_data (the real
loader and the real Great Expectations suite), on a small copy of the vendored FD001 data.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedpipe import market
from fedpipe.config import load_federation
from fedpipe.errors import MarketDataError
from fedpipe.storage import Exchange

DATA = Path(__file__).resolve().parents[1] / "usecases" / "predictive_maintenance" / "data" / "FD001"


@pytest.fixture(scope="module")
def tables():
    """A small valid market: 12 FD001 training engines (~2,500 rows) and FD001's whole test table."""
    train = pd.read_parquet(DATA / "train.parquet")
    return train[train["unit"] <= 12].reset_index(drop=True), pd.read_parquet(DATA / "test.parquet")


def _site(tmp_path: Path, usecase_options: str = "") -> market.MarketSite:
    (tmp_path / "fed.toml").write_text(f"""
[federation]
name = "bad-inputs"
usecase = "predictive_maintenance"
quorum = 1
runs_dir = "{tmp_path / 'runs'}"
keys_dir = "{tmp_path / 'keys'}"
[model]
base_score = 0.5
[usecase]
{usecase_options}
[markets.M1]
data = "{tmp_path / 'data'}"
state = "{tmp_path / 'state'}"
""", encoding="utf-8")
    return market.MarketSite(load_federation(tmp_path / "fed.toml"), "M1", Exchange(tmp_path / "exchange"))


def _write(folder: Path, train: pd.DataFrame, test: pd.DataFrame, fmt: str = "parquet") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in (("train", train), ("test", test)):
        if fmt == "parquet":
            table.to_parquet(folder / f"{name}.parquet", index=False)
        else:
            table.to_csv(folder / f"{name}.csv", index=False)


def _load_and_validate(site: market.MarketSite):
    data = market.load_data(site)
    return market.validate_data(site, data)


# --- the catalogue: (case, breaker, file the error must name, field it must name or None, words it must say) ---

def _empty_file(d, train, test):
    _write(d, train, test)
    (d / "train.parquet").write_bytes(b"")


def _header_only(d, train, test):
    _write(d, train.iloc[:0], test, fmt="csv")


def _semicolons(d, train, test):
    _write(d, train, test, fmt="csv")
    (d / "train.csv").write_text(train.to_csv(index=False, sep=";"))


def _utf16(d, train, test):
    _write(d, train, test, fmt="csv")
    (d / "train.csv").write_bytes(train.to_csv(index=False).encode("utf-16"))


def _missing_column(d, train, test):
    _write(d, train.drop(columns=["sensor_4"]), test)


def _renamed_column(d, train, test):
    _write(d, train.rename(columns={"sensor_4": "Sensor 4"}), test)


def _extra_column(d, train, test):
    _write(d, train.assign(operator_name="x"), test)


def _text_in_numbers(d, train, test):
    train = train.astype({"sensor_7": str})
    train.loc[5, "sensor_7"] = "n/a"
    _write(d, train, test)


def _nan(d, train, test):
    train = train.copy()
    train.loc[[3, 9], "sensor_11"] = np.nan
    _write(d, train, test)


def _inf(d, train, test):
    train = train.copy()
    train.loc[4, "setting_1"] = np.inf
    _write(d, train, test)


def _minus_inf_in_test(d, train, test):
    test = test.copy()
    test.loc[2, "sensor_2"] = -np.inf
    _write(d, train, test)


def _one_class(d, train, test):
    # Held-out engines all far from failure (rul > 30): the held-out label has one class only.
    _write(d, train, test[test["rul"] > 60])


def _duplicated_rows(d, train, test):
    _write(d, pd.concat([train, train.iloc[:50]], ignore_index=True), test)


def _absurd_values(d, train, test):
    train = train.copy()
    train.loc[7, "sensor_2"] = -273.0  # a temperature sensor reading below absolute zero in Rankine terms
    _write(d, train, test)


def _one_row(d, train, test):
    _write(d, train.iloc[:1], test)


def _corrupt_parquet(d, train, test):
    _write(d, train, test)
    blob = (d / "train.parquet").read_bytes()
    (d / "train.parquet").write_bytes(blob[: len(blob) // 2] + b"\x00" * 64 + blob[-8:])


def _folder_is_a_file(d, train, test):
    d.parent.mkdir(parents=True, exist_ok=True)
    d.write_text("not a folder")


def _no_folder(d, train, test):
    pass


def _too_large(d, train, test):
    _write(d, train, test)  # ~0.1 MB; the case sets the limit to 0.01 MB


CASES = {
    "empty file": (_empty_file, "train.parquet", None, "empty (0 bytes)"),
    "header only": (_header_only, "train.csv", None, "header but no rows"),
    "wrong delimiter": (_semicolons, "train.csv", None, "';'-separated"),
    "wrong encoding": (_utf16, "train.csv", None, "UTF-8"),
    "column missing": (_missing_column, "train.parquet", "sensor_4", "required column is missing"),
    "column renamed": (_renamed_column, "train.parquet", "sensor_4", "'Sensor 4'"),
    "column extra": (_extra_column, "train.parquet", "operator_name", "not in the data contract"),
    "text in a numeric column": (_text_in_numbers, "train.parquet", "sensor_7", "non-numeric value (first at row"),
    "NaN": (_nan, "train.parquet", "sensor_11", "null"),
    "inf": (_inf, "train.parquet", "setting_1", "1 infinite value"),
    "-inf in the held-out file": (_minus_inf_in_test, "test.parquet", "sensor_2", "1 infinite value"),
    "one class only": (_one_class, "test.parquet", "failure_within_horizon", "never occurs"),
    "duplicated rows": (_duplicated_rows, "train.parquet", "unit, cycle", "repeat another row's (unit, cycle)"),
    "physically absurd value": (_absurd_values, "train.parquet", "sensor_2", "outside [500, 680]"),
    "one row": (_one_row, "train.parquet", None, "at least 500"),
    "corrupt Parquet": (_corrupt_parquet, "train.parquet", None, "unreadable Parquet file"),
    "folder is a file": (_folder_is_a_file, "data", None, "is not a folder"),
    "no folder": (_no_folder, "data", None, "market data folder not found"),
    "file far larger than expected": (_too_large, "train.parquet", None, "larger than the 0.01 MB limit"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_named_by_market_file_and_field(case, tables, tmp_path):
    breaker, file, field, says = CASES[case]
    site = _site(tmp_path, "max_file_mb = 0.01" if case == "file far larger than expected" else "")
    breaker(tmp_path / "data", *tables)
    with pytest.raises(MarketDataError) as caught:
        _load_and_validate(site)
    err = caught.value
    assert err.market == "M1"
    assert Path(err.file).name == file, str(err)
    assert err.field == field, str(err)
    assert says in str(err), str(err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder whatever its permissions")
def test_unreadable_folder_is_named(tables, tmp_path):
    site = _site(tmp_path)
    _write(tmp_path / "data", *tables)
    (tmp_path / "data").chmod(0)
    try:
        with pytest.raises(MarketDataError) as caught:
            _load_and_validate(site)
    finally:
        (tmp_path / "data").chmod(0o755)
    assert caught.value.market == "M1" and Path(caught.value.file).name == "data" and caught.value.field is None
    assert "not readable" in str(caught.value)


def test_unreadable_folder_is_named_even_when_run_as_root(tables, tmp_path, monkeypatch):
    """The permission fault injected: the OS denies access to the market's folder (root would not be denied)."""
    import usecases.predictive_maintenance.data as loader

    site = _site(tmp_path)
    _write(tmp_path / "data", *tables)
    real_access = os.access
    monkeypatch.setattr(loader.os, "access",
                        lambda path, mode: False if Path(path) == tmp_path / "data" else real_access(path, mode))
    with pytest.raises(MarketDataError, match="market 'M1': .*data: file: market data folder is not readable"):
        _load_and_validate(site)
