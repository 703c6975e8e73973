"""Drilling efficiency data: vendored values, the deepest-20 % split, errors naming market, file and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedpipe.contract import validate_table
from fedpipe.errors import ConfigError, MarketDataError
from usecases.drilling_efficiency import USECASE
from usecases.drilling_efficiency.data import COLUMNS, load_market
from usecases.drilling_efficiency.vendor import WELLS

REPO = Path(__file__).resolve().parents[3]
DATA = REPO / "usecases" / "drilling_efficiency" / "data"
SUITE = REPO / "expectations" / "drilling_efficiency.json"
ORIGINALS = Path("/work/shared/datasets/usrop_volve")


@pytest.mark.skipif(not ORIGINALS.exists(), reason="the USROP originals are not on this machine")
@pytest.mark.parametrize("well", sorted(WELLS))
def test_vendored_values_equal_the_original_csv(well):
    original = pd.read_csv(ORIGINALS / WELLS[well][0], index_col=0)
    vendored = pd.read_parquet(DATA / well / "well.parquet")
    assert list(vendored.columns) == COLUMNS and len(vendored) == len(original)
    np.testing.assert_array_equal(vendored.to_numpy(), original.to_numpy(dtype="float64"))


def test_licence_and_citation_sit_next_to_the_data():
    assert "CC BY-NC-SA 4.0" in (DATA / "LICENSE").read_text()
    assert "Tunkiel" in (DATA / "README.md").read_text()


@pytest.mark.parametrize("well", sorted(WELLS))
def test_deepest_fifth_is_held_out_and_both_tables_meet_the_contract(well):
    data = load_market(well, DATA / well, {})
    total = len(data.train) + len(data.test)
    assert len(data.test) == round(0.2 * total)
    assert data.train["depth_m"].max() < data.test["depth_m"].min()  # held out = deeper than all training
    for table in (data.train, data.test):
        assert validate_table(table, suite_path=SUITE, market=well, file="well.parquet").success


def test_subsample_keeps_a_share_of_training_rows_never_test_rows():
    full = load_market("F-7", DATA / "F-7", {})
    poor = load_market("F-7", DATA / "F-7", {"subsample": 0.3, "seed": 1})
    assert 0.25 * len(full.train) < len(poor.train) < 0.35 * len(full.train)
    pd.testing.assert_frame_equal(full.test, poor.test)


def test_features_are_the_same_columns_in_every_well():
    columns = {tuple(USECASE.features(load_market(w, DATA / w, {}).test, {}).columns) for w in WELLS}
    assert len(columns) == 1 and "rop_m_per_h" not in next(iter(columns))


def _copy(tmp_path, well="F-9"):
    folder = tmp_path / well
    shutil.copytree(DATA / well, folder)
    return folder


def test_missing_column_names_market_file_and_field(tmp_path):
    folder = _copy(tmp_path)
    table = pd.read_parquet(folder / "well.parquet").drop(columns=["rpm"])
    table.to_parquet(folder / "well.parquet")
    with pytest.raises(MarketDataError) as err:
        load_market("F-9", folder, {})
    assert err.value.market == "F-9" and err.value.field == "rpm" and "well.parquet" in str(err.value)


def test_text_in_a_number_column_names_the_field(tmp_path):
    folder = _copy(tmp_path)
    table = pd.read_parquet(folder / "well.parquet")
    table = table.astype({"wob_kkgf": object})
    table.loc[5, "wob_kkgf"] = "heavy"
    (folder / "well.parquet").unlink()
    table.to_csv(folder / "well.csv", index=False)
    with pytest.raises(MarketDataError, match="wob_kkgf.*non-numeric.*heavy"):
        load_market("F-9", folder, {})


def test_corrupt_file_and_missing_folder(tmp_path):
    folder = _copy(tmp_path)
    (folder / "well.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(MarketDataError, match="unreadable"):
        load_market("F-9", folder, {})
    with pytest.raises(MarketDataError, match="not found"):
        load_market("F-9", tmp_path / "nowhere", {})


def test_a_negative_rop_fails_the_contract_naming_the_field():
    data = load_market("F-9", DATA / "F-9", {})
    broken = data.train.copy()
    broken.loc[10, "rop_m_per_h"] = -3.0
    summary = validate_table(broken, suite_path=SUITE, market="F-9", file="well.parquet")
    assert not summary.success and summary.error().field == "rop_m_per_h"


@pytest.mark.parametrize("option,value", [("holdout", 0.9), ("holdout", "a fifth"), ("subsample", 0), ("seed", -1)])
def test_bad_options_name_the_option(option, value):
    with pytest.raises(ConfigError, match=option):
        load_market("F-9", DATA / "F-9", {option: value})
