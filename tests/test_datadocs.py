"""`fedpipe validate`: the contract run where the data lives, with Great Expectations Data Docs in the market."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import tomli_w

from fedpipe.cli import main

DATA = Path(__file__).resolve().parents[1] / "usecases" / "predictive_maintenance" / "data"


def _federation(tmp_path: Path) -> Path:
    shutil.copytree(DATA / "FD004", tmp_path / "FD004")
    path = tmp_path / "fed.toml"
    path.write_bytes(tomli_w.dumps({
        "federation": {"name": "fed", "usecase": "predictive_maintenance", "quorum": 1,
                       "runs_dir": str(tmp_path / "runs")},
        "model": {"base_score": 0.5},
        "markets": {"FD004": {"data": "FD004", "subsample": 0.3, "state": "state/FD004"}},
    }).encode())
    return path


def test_validate_prints_the_summary_and_builds_data_docs_in_the_market(tmp_path, capsys):
    config = _federation(tmp_path)
    assert main(["validate", "--config", str(config), "--market", "FD004"]) == 0
    out = capsys.readouterr().out
    assert "FD004: train.parquet: passed:" in out and "(contract predictive_maintenance 1.1.0)" in out
    docs = tmp_path / "state" / "FD004" / "fed" / "data-docs"
    assert (docs / "index.html").exists()
    pages = sorted(p.name for p in docs.glob("validations/**/*.html"))
    assert pages == ["FD004-test.html", "FD004-train.html"]
    summary = json.loads((tmp_path / "state" / "FD004" / "fed" / "validation-summary.json").read_text())
    assert [s["success"] for s in summary] == [True, True] and "failures" in summary[0]


def test_validate_names_the_failing_field_and_exits_1(tmp_path, capsys):
    config = _federation(tmp_path)
    train = pd.read_parquet(tmp_path / "FD004" / "train.parquet")
    train["setting_3"] = 75.0  # not one of the contract's two throttle settings
    train.to_parquet(tmp_path / "FD004" / "train.parquet")
    assert main(["validate", "--config", str(config), "--market", "FD004", "--no-docs"]) == 1
    out = capsys.readouterr().out
    assert "FD004: train.parquet: FAILED" in out
    assert "  - setting_3: " in out and "values not in [60.0, 100.0]" in out
    assert main(["validate", "--config", str(config), "--market", "FD009"]) == 2
    assert "no market 'FD009'" in capsys.readouterr().err
