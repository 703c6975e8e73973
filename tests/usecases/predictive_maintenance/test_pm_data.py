"""Tests for usecases/predictive_maintenance/data.py and the vendored C-MAPSS Parquet files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from fedpipe.errors import ConfigError, MarketDataError
from fedpipe.usecase import MarketData, get_usecase
from usecases.predictive_maintenance import data as pm_data
from usecases.predictive_maintenance.data import LABEL, RAW_COLUMNS, load_market

DATA = Path(pm_data.__file__).parent / "data"
ORIGINALS = Path(os.environ.get("CMAPSS_DIR", "/work/shared/datasets/cmapss"))
SUBSETS = {  # subset: (train rows, train units, test rows, test units), from the original files
    "FD001": (20631, 100, 13096, 100),
    "FD002": (53759, 260, 33991, 259),
    "FD003": (24720, 100, 16596, 100),
    "FD004": (61249, 249, 41214, 248),
}


# --- the vendored files -------------------------------------------------------------------------------------


@pytest.mark.parametrize("subset", SUBSETS)
def test_vendored_parquet_shape_types_and_compression(subset):
    train_rows, train_units, test_rows, test_units = SUBSETS[subset]
    for kind, rows, units, columns in [
        ("train", train_rows, train_units, RAW_COLUMNS),
        ("test", test_rows, test_units, [*RAW_COLUMNS, "rul"]),
    ]:
        path = DATA / subset / f"{kind}.parquet"
        table = pd.read_parquet(path)
        assert list(table.columns) == columns
        assert (len(table), table["unit"].nunique()) == (rows, units)
        ints = ["unit", "cycle", "rul"] if kind == "test" else ["unit", "cycle"]
        assert {c: str(t) for c, t in table.dtypes.items()} == {c: "int32" if c in ints else "float64" for c in columns}
        meta = pq.ParquetFile(path).metadata
        assert meta.row_group(0).column(0).compression == "ZSTD"


def test_vendored_values_match_known_lines_of_the_originals():
    """A few values copied by hand from the text files, checked without needing the originals."""
    test1 = pd.read_parquet(DATA / "FD001" / "test.parquet")
    first = test1.iloc[0]
    assert (first["unit"], first["cycle"]) == (1, 1)
    assert first["setting_1"] == 0.0023 and first["sensor_2"] == 643.02 and first["sensor_21"] == 23.3735
    unit1 = test1[test1["unit"] == 1]
    assert unit1["cycle"].max() == 31 and unit1["rul"].iloc[-1] == 112  # RUL_FD001.txt line 1
    assert unit1["rul"].iloc[0] == 112 + 31 - 1

    train4 = pd.read_parquet(DATA / "FD004" / "train.parquet")
    last = train4.iloc[-1]
    assert (last["unit"], last["cycle"], last["setting_1"], last["sensor_14"]) == (249, 255, 42.0030, 8144.33)
    test4 = pd.read_parquet(DATA / "FD004" / "test.parquet")
    assert tuple(test4.iloc[-1][["unit", "cycle", "rul"]]) == (248, 281, 26)  # RUL_FD004.txt last line


@pytest.mark.skipif(not ORIGINALS.is_dir(), reason=f"C-MAPSS originals not found at {ORIGINALS} (set CMAPSS_DIR)")
@pytest.mark.parametrize("subset", SUBSETS)
def test_vendored_parquet_equals_the_originals(subset):
    for kind in ("train", "test"):
        original = np.loadtxt(ORIGINALS / f"{kind}_{subset}.txt")
        vendored = pd.read_parquet(DATA / subset / f"{kind}.parquet")
        assert np.array_equal(vendored[RAW_COLUMNS].to_numpy(dtype="float64"), original)
    rul_at_end = np.loadtxt(ORIGINALS / f"RUL_{subset}.txt", dtype=int)
    test = pd.read_parquet(DATA / subset / "test.parquet")
    for unit, rows in test.groupby("unit"):
        expected = rul_at_end[unit - 1] + rows["cycle"].max() - rows["cycle"]
        assert (rows["rul"] == expected).all(), unit


# --- load_market on the vendored data -----------------------------------------------------------------------


@pytest.mark.parametrize("subset", SUBSETS)
def test_load_market_labels_train_and_test(subset):
    market = load_market(subset, DATA / subset, {})
    assert isinstance(market, MarketData)
    assert market.sources == {"train": DATA / subset / "train.parquet", "test": DATA / subset / "test.parquet"}
    train, test = market.train, market.test
    assert list(train.columns) == [*RAW_COLUMNS, "rul", LABEL]
    assert list(test.columns) == [*RAW_COLUMNS, "rul", LABEL]
    assert (len(train), len(test)) == (SUBSETS[subset][0], SUBSETS[subset][2])
    assert train["rul"].dtype == "int32" and train[LABEL].dtype == "int32" and test[LABEL].dtype == "int32"

    last = train.groupby("unit")["cycle"].transform("max")
    assert (train["rul"] == last - train["cycle"]).all()
    assert (train.loc[train["cycle"] == last, "rul"] == 0).all()
    assert (train[LABEL] == (train["rul"] <= 30)).all()
    assert (test[LABEL] == (test["rul"] <= 30)).all()
    # every run-to-failure engine contributes exactly horizon + 1 positive rows (all engines run > 31 cycles)
    assert train[LABEL].sum() == 31 * train["unit"].nunique()
    original_test = pd.read_parquet(DATA / subset / "test.parquet")
    pd.testing.assert_frame_equal(test.drop(columns=LABEL), original_test)


def test_horizon_option_moves_the_label():
    h10 = load_market("FD001", DATA / "FD001", {"horizon": 10})
    assert h10.train[LABEL].sum() == 11 * 100
    assert (h10.test[LABEL] == (h10.test["rul"] <= 10)).all()


def test_usecase_is_registered_with_this_loader():
    usecase = get_usecase("predictive_maintenance")
    assert usecase.load is load_market and usecase.label == LABEL
    assert usecase.defaults["horizon"] == 30 and usecase.defaults["window"] == 10


# --- subsample ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("subset", SUBSETS)
def test_subsample_keeps_a_fifth_of_the_training_engines(subset):
    full = load_market(subset, DATA / subset, {})
    small = load_market(subset, DATA / subset, {"subsample": 0.2, "seed": 0})
    units = full.train["unit"].nunique()
    kept = small.train["unit"].unique()
    assert len(kept) == round(0.2 * units)
    for unit in kept:  # whole engines: every cycle of a kept unit is there, labels unchanged
        pd.testing.assert_frame_equal(
            small.train[small.train["unit"] == unit].reset_index(drop=True),
            full.train[full.train["unit"] == unit].reset_index(drop=True),
        )
    pd.testing.assert_frame_equal(small.test, full.test)  # the test set is never subsampled


def test_subsample_is_deterministic_for_a_seed():
    def units(seed):
        market = load_market("FD002", DATA / "FD002", {"subsample": 0.2, "seed": seed})
        return sorted(market.train["unit"].unique())

    assert units(0) == units(0)
    assert units(0) != units(1)


# --- CSV fallback and clean integer coercion ----------------------------------------------------------------


def _small_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    train = pd.read_parquet(DATA / "FD001" / "train.parquet")
    test = pd.read_parquet(DATA / "FD001" / "test.parquet")
    return train[train["unit"] <= 3].reset_index(drop=True), test[test["unit"] <= 3].reset_index(drop=True)


def _write(folder: Path, train: pd.DataFrame | None, test: pd.DataFrame | None, fmt: str = "parquet") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in (("train", train), ("test", test)):
        if table is None:
            continue
        if fmt == "parquet":
            table.to_parquet(folder / f"{name}.parquet", index=False)
        else:
            table.to_csv(folder / f"{name}.csv", index=False)
    return folder


def test_csv_is_read_when_there_is_no_parquet(tmp_path):
    train, test = _small_tables()
    from_parquet = load_market("m", _write(tmp_path / "pq", train, test), {})
    from_csv = load_market("m", _write(tmp_path / "csv", train, test, fmt="csv"), {})
    assert from_csv.sources == {"train": tmp_path / "csv" / "train.csv", "test": tmp_path / "csv" / "test.csv"}
    pd.testing.assert_frame_equal(from_csv.train, from_parquet.train)
    pd.testing.assert_frame_equal(from_csv.test, from_parquet.test)


def test_whole_floats_and_numeric_text_are_coerced_cleanly(tmp_path):
    train, test = _small_tables()
    train = train.astype({"unit": "float64", "cycle": "int64", "sensor_3": "float32"})
    test = test.astype({"rul": "float64", "sensor_1": "str"})
    market = load_market("m", _write(tmp_path, train, test), {})
    assert market.train["unit"].dtype == "int32" and market.train["cycle"].dtype == "int32"
    assert market.test["rul"].dtype == "int32"
    assert market.train["sensor_3"].dtype == "float64" and market.test["sensor_1"].dtype == "float64"
    assert market.test["sensor_1"].iloc[0] == 518.67


def test_rows_come_back_sorted_by_unit_and_cycle(tmp_path):
    train, test = _small_tables()
    market = load_market("m", _write(tmp_path, train.sample(frac=1, random_state=0), test[::-1]), {})
    pd.testing.assert_frame_equal(market.train, load_market("m", _write(tmp_path / "b", train, test), {}).train)
    assert market.test["unit"].is_monotonic_increasing


# --- every bad input names market, file and field -----------------------------------------------------------


def _break(kind: str, folder: Path) -> tuple[Path, str | None, str]:
    """Write a broken market into ``folder``; return (file the error must name, field, text the problem has)."""
    train, test = _small_tables()
    if kind == "folder missing":
        return folder / "nowhere", None, "folder not found"
    if kind == "train missing":
        _write(folder, None, test)
        return folder / "train.parquet", None, "not found"
    if kind == "test missing":
        _write(folder, train, None)
        return folder / "test.parquet", None, "not found"
    if kind == "corrupt parquet":
        _write(folder, None, test)
        (folder / "train.parquet").write_bytes(b"PAR1 this is not parquet at all \x00\x01\x02")
        return folder / "train.parquet", None, "unreadable Parquet"
    if kind == "truncated parquet":
        _write(folder, train, test)
        blob = (folder / "test.parquet").read_bytes()
        (folder / "test.parquet").write_bytes(blob[: len(blob) // 2])
        return folder / "test.parquet", None, "unreadable Parquet"
    if kind == "empty file":
        _write(folder, None, test)
        (folder / "train.parquet").write_bytes(b"")
        return folder / "train.parquet", None, "empty"
    if kind == "parquet without rows":
        _write(folder, train.iloc[:0], test)
        return folder / "train.parquet", None, "no rows"
    if kind == "csv header only":
        _write(folder, train.iloc[:0], test, fmt="csv")
        return folder / "train.csv", None, "no rows"
    if kind == "blank csv":
        _write(folder, train, test, fmt="csv")
        (folder / "test.csv").write_text("\n")
        return folder / "test.csv", None, "empty"
    if kind == "column missing":
        _write(folder, train.drop(columns="sensor_7"), test)
        return folder / "train.parquet", "sensor_7", "missing"
    if kind == "test without rul":
        _write(folder, train, test.drop(columns="rul"))
        return folder / "test.parquet", "rul", "missing"
    if kind == "text in numeric column":
        train = train.astype({"sensor_4": "str"})  # a text column, as a spreadsheet export would give
        train.loc[[0, 5, 9], "sensor_4"] = ["n/a", "broken", "1,400.6"]
        _write(folder, train, test)
        return folder / "train.parquet", "sensor_4", "3 non-numeric values (first at row 0)"
    if kind == "text in numeric csv column":
        train = train.astype({"cycle": "object"})
        train.loc[2, "cycle"] = "three"
        _write(folder, train, test, fmt="csv")
        _write(folder, None, test)  # test stays Parquet: the two tables are found independently
        return folder / "train.csv", "cycle", "1 non-numeric value (first at row 2)"
    if kind == "fractional cycle":
        train = train.astype({"cycle": "float64"})
        train.loc[[3, 4], "cycle"] = [4.5, 5.25]
        _write(folder, train, test)
        return folder / "train.parquet", "cycle", "2 non-integer values (first at row 3)"
    if kind == "unit with gaps":
        train = train.astype({"unit": "float64"})
        train.loc[7, "unit"] = np.nan
        _write(folder, train, test)
        return folder / "train.parquet", "unit", "1 missing value"
    if kind == "boolean sensor":
        test = test.assign(sensor_9=test["sensor_9"] > 9000)
        _write(folder, train, test)
        return folder / "test.parquet", "sensor_9", "has type bool"
    raise AssertionError(kind)


BROKEN = [
    "folder missing",
    "train missing",
    "test missing",
    "corrupt parquet",
    "truncated parquet",
    "empty file",
    "parquet without rows",
    "csv header only",
    "blank csv",
    "column missing",
    "test without rul",
    "text in numeric column",
    "text in numeric csv column",
    "fractional cycle",
    "unit with gaps",
    "boolean sensor",
]


@pytest.mark.parametrize("kind", BROKEN)
def test_bad_input_raises_market_data_error_naming_market_file_and_field(kind, tmp_path):
    file, field, problem = _break(kind, tmp_path / "market")
    with pytest.raises(MarketDataError) as caught:
        load_market("FD00X-north", tmp_path / "market" if kind != "folder missing" else file, {})
    err = caught.value
    assert (err.market, err.file, err.field) == ("FD00X-north", str(file), field)
    assert problem in err.problem
    message = str(err)
    assert "FD00X-north" in message and str(file) in message
    assert (f"field '{field}'" if field else "file") in message


def test_every_missing_column_is_listed(tmp_path):
    train, test = _small_tables()
    _write(tmp_path, train.drop(columns=["setting_2", "sensor_21"]), test)
    with pytest.raises(MarketDataError, match="setting_2, sensor_21") as caught:
        load_market("m", tmp_path, {})
    assert caught.value.field == "setting_2"


@pytest.mark.parametrize(
    "options, field",
    [
        ({"horizon": 0}, "horizon"),
        ({"horizon": 2.5}, "horizon"),
        ({"horizon": True}, "horizon"),
        ({"subsample": 0.0}, "subsample"),
        ({"subsample": 1.5}, "subsample"),
        ({"subsample": "half"}, "subsample"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_options_raise_config_error(options, field):
    with pytest.raises(ConfigError) as caught:
        load_market("FD001", DATA / "FD001", options)
    assert caught.value.field == field and "FD001" in caught.value.file
