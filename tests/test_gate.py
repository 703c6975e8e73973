"""The "no market worse off" gate: real XGBoost models on real C-MAPSS data, scored in each market."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import xgboost as xgb

from fedpipe.config import load_federation
from fedpipe.gate import gate, model_card, score_champion
from fedpipe.market import MarketSite, load_data
from fedpipe.storage import Exchange

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def markets(tmp_path_factory):
    federation = load_federation(REPO / "federations" / "cmapss.toml")
    exchange = Exchange(tmp_path_factory.mktemp("exchange"))
    sites = {m: MarketSite(federation, m, exchange) for m in ("FD001", "FD003")}
    return {m: (site, load_data(site)) for m, site in sites.items()}


def _train(markets, names, trees=20) -> dict:
    """A model trained on the pooled rows of ``names`` (a stand-in for a global model), as an XGBoost JSON doc."""
    site = markets[names[0]][0]
    tables = pd.concat([markets[n][1].train for n in names], ignore_index=True)
    features = site.usecase.features(tables, site.options())
    matrix = xgb.DMatrix(features, label=tables[site.usecase.label].to_numpy(), feature_names=list(features.columns))
    params = {**site.federation.xgb_params(), "objective": site.usecase.objective, "max_depth": 4, "nthread": 1}
    return json.loads(bytes(xgb.train(params, matrix, num_boost_round=trees).save_raw("json")))


def test_a_model_trained_on_another_market_only_is_blocked_by_the_market_it_ignores(markets):
    champion = _train(markets, ["FD001", "FD003"])  # knows both fault modes
    challenger = _train(markets, ["FD001"])  # never saw FD003's second fault mode
    scored = {name: {m: score_champion(site, data, doc)["metrics"] for m, (site, data) in markets.items()}
              for name, doc in (("champion", champion), ("challenger", challenger))}

    result = gate(scored["challenger"], scored["champion"], metric="log_loss", tolerance=0.01)

    assert not result["passed"]
    assert result["blocked_by"] == ["FD003"]
    fd003 = result["markets"]["FD003"]
    assert fd003["worse_by"] == pytest.approx(scored["challenger"]["FD003"]["log_loss"]
                                              - scored["champion"]["FD003"]["log_loss"])
    assert fd003["worse_by"] > 0.01 and not result["markets"]["FD001"]["blocks"]
    assert result["summary"].startswith(f"blocked by FD003 (log_loss {fd003['candidate']:.4f} vs champion "
                                        f"{fd003['champion']:.4f}: worse by {fd003['worse_by']:.4f}")
    # The other way round, the pooled model is no worse anywhere: it would be promoted.
    assert gate(scored["champion"], scored["challenger"], metric="log_loss", tolerance=0.01)["passed"]
    # A tolerance larger than FD003's loss lets the challenger through.
    assert gate(scored["challenger"], scored["champion"], metric="log_loss", tolerance=fd003["worse_by"] + 1e-6)["passed"]


def test_higher_is_better_metrics_and_ties():
    champ = {"A": {"auc": 0.95}, "B": {"auc": 0.90}}
    assert gate({"A": {"auc": 0.945}, "B": {"auc": 0.99}}, champ, metric="auc", tolerance=0.01)["passed"]
    result = gate({"A": {"auc": 0.93}, "B": {"auc": 0.99}}, champ, metric="auc", tolerance=0.01)
    assert result["blocked_by"] == ["A"] and result["markets"]["A"]["worse_by"] == pytest.approx(0.02)
    assert gate({"A": {"auc": 0.94}, "B": {"auc": 0.90}}, champ, metric="auc", tolerance=0.01)["passed"]  # exactly at


def test_a_market_without_metrics_blocks_and_no_champion_passes():
    champ = {"A": {"log_loss": 0.1}, "B": {"log_loss": 0.1}}
    result = gate({"A": {"log_loss": 0.1}}, champ, metric="log_loss", tolerance=0.01, markets=["A", "B"])
    assert result["blocked_by"] == ["B"] and "no log_loss for the candidate" in result["markets"]["B"]["why"]
    first = gate({"A": {"log_loss": 0.3}}, None, metric="log_loss", tolerance=0.01)
    assert first["passed"] and "no champion yet" in first["summary"]


def test_model_card_has_the_sections_the_council_asked_for():
    lineage = {"federation": "f", "run_id": "r", "round": 2, "usecase": "predictive_maintenance", "strategy": "bagging",
               "model_sha256": "a" * 64, "parent_model_sha256": "b" * 64,
               "contract": {"suite": "predictive_maintenance", "contract_version": "1.1.0"},
               "markets": {"A": {"train_rows": 100, "test_rows": 10, "fingerprint": {"train": "c" * 64},
                                 "contract_version": "1.1.0", "validation": []}},
               "left_out": {"B": "stopped before round 1"}, "parameters": {"trees_per_round": 3},
               "code": {"git_commit": "d" * 40, "git_dirty": False}, "packages": {"xgboost": "3.2"}}
    result = gate({"A": {"log_loss": 0.2}}, {"A": {"log_loss": 0.1}}, metric="log_loss", tolerance=0.01)
    roi = pd.DataFrame([{"market": "A", "savings": 1e6, "programme_cost": 2e5, "roi": 5.0}])
    card = model_card(7, lineage, result, "challenger", roi, "Predicts engine failures.")
    for section in ("# Model card: f v7 (challenger)", "## Intended use", "Predicts engine failures.", "## Data",
                    "## Per-market metrics", "| A | 0.2000 | 0.1000 | 0.1000 | True |", "## ROI",
                    "## Limitations", "B: stopped before round 1", "not passed"):
        assert section in card


def test_every_market_but_a_revoked_one_must_vouch_and_a_left_out_one_says_why(tmp_path):
    from fedpipe.config import load_federation
    from fedpipe.gate import vouching_markets

    (tmp_path / "f.toml").write_text("""
[federation]
name = "f"
usecase = "predictive_maintenance"
quorum = 1
[model]
base_score = 0.5
[markets.A]
data = "a"
[markets.B]
data = "b"
[markets.C]
data = "c"
revoked = true
""", encoding="utf-8")
    markets = vouching_markets(load_federation(tmp_path / "f.toml"))
    assert markets == ["A", "B"]
    champ = {"A": {"log_loss": 0.1}}
    result = gate({"A": {"log_loss": 0.1}}, champ, metric="log_loss", tolerance=0.01, markets=markets,
                  reasons={"B": "left out of round 3: market data folder not found"})
    assert not result["passed"] and result["blocked_by"] == ["B"]
    assert "(left out of round 3: market data folder not found)" in result["summary"]
