"""fedpipe.market on the real vendored FD001 data (a fifth of its engines), the real GE suite and real XGBoost."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from fedpipe import central, keys, market, sealing
from fedpipe.aggregation import aggregate_bagging, to_booster, tree_count
from fedpipe.config import load_federation
from fedpipe.errors import MarketDataError, SealError
from fedpipe.storage import Exchange
from fedpipe.usecase import MarketData

DATA = Path(__file__).resolve().parents[1] / "usecases" / "predictive_maintenance" / "data"
K = 3  # trees per round


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    root = tmp_path_factory.mktemp("federation")
    (root / "fed.toml").write_text(f"""
[federation]
name = "test-fed"
usecase = "predictive_maintenance"
rounds = 2
trees_per_round = {K}
quorum = 1
runs_dir = "{root / 'runs'}"
keys_dir = "{root / 'keys'}"

[model]
max_depth = 3
base_score = 0.5

[markets.FD001]
data = "{DATA / 'FD001'}"
subsample = 0.2
state = "state/FD001"
""", encoding="utf-8")
    return load_federation(root / "fed.toml")


@pytest.fixture(scope="module")
def site(federation, tmp_path_factory):
    return market.MarketSite(federation, "FD001", Exchange(tmp_path_factory.mktemp("exchange")))


@pytest.fixture(scope="module")
def data(site):
    return market.load_data(site)


@pytest.fixture(scope="module")
def first_update(site, data):
    return market.train_update(site, data, None)


def _with_data(site, folder: Path, subsample: float = 0.2) -> market.MarketSite:
    """The same site reading its data from ``folder``."""
    fed = site.federation
    markets = {"FD001": fed.markets["FD001"].model_copy(update={"data": folder, "subsample": subsample})}
    return market.MarketSite(fed.model_copy(update={"markets": markets}), "FD001", site.exchange)


def _trees(doc):
    return doc["learner"]["gradient_booster"]["model"]["trees"]


# --- load and validate --------------------------------------------------------------------------------------


def test_load_and_validate_real_data(site, data):
    full_units = pd.read_parquet(DATA / "FD001" / "train.parquet", columns=["unit"])["unit"].nunique()
    assert data.train["unit"].nunique() == round(0.2 * full_units)  # subsample keeps a fifth of the engines
    assert data.test["unit"].nunique() == 100  # the held-out table is never subsampled
    assert set(data.train["failure_within_horizon"]) == {0, 1}
    summaries = market.validate_data(site, data)
    assert [s.success for s in summaries] == [True, True]
    assert [Path(s.file).name for s in summaries] == ["train.parquet", "test.parquet"]
    assert str(DATA) not in json.dumps([s.to_dict() for s in summaries])  # summaries leave the market
    assert summaries[0].n_rows == len(data.train) and summaries[0].evaluated > 0
    assert summaries[0].passed == summaries[0].evaluated


def test_validate_data_raises_naming_file_and_field(site, data):
    broken = data.train.copy()
    broken.loc[::50, "sensor_4"] = np.nan  # loads fine, breaks the contract's not-null expectation
    with pytest.raises(MarketDataError, match="null") as info:
        market.validate_data(site, MarketData(broken, data.test, data.sources))
    assert info.value.field == "sensor_4" and Path(info.value.file).name == "train.parquet"
    note = market.describe_failure(site, info.value)
    assert note["field"] == "sensor_4" and str(DATA) not in note["reason"]


# --- train --------------------------------------------------------------------------------------------------


def test_train_update_has_k_new_trees_with_local_statistics_masked(data, first_update):
    assert tree_count(first_update.model) == K
    assert first_update.n_rows == len(data.train)
    assert first_update.market == "FD001"
    for tree in _trees(first_update.model):
        assert set(tree["sum_hessian"]) == {0.0}
        assert set(tree["loss_changes"]) == {0.0}
        assert any(v != 0 for v in tree["base_weights"])  # the leaves themselves are kept


def test_continuing_from_a_global_model_sends_only_the_new_trees(site, data, first_update):
    global_doc = aggregate_bagging(None, [first_update])
    update = market.train_update(site, data, global_doc)
    assert tree_count(update.model) == K
    assert _trees(update.model) != _trees(global_doc)
    # Appended to the global model, the new trees are exactly K more boosting steps on the local rows.
    next_doc = aggregate_bagging(global_doc, [update])
    assert tree_count(next_doc) == 2 * K
    features = site.usecase.features(data.test.head(500), site.options())
    direct = xgb.train({**site.federation.xgb_params(), "objective": "binary:logistic"},
                       xgb.DMatrix(site.usecase.features(data.train, site.options()), label=data.train["failure_within_horizon"]),
                       num_boost_round=2 * K)
    np.testing.assert_allclose(to_booster(next_doc).predict(xgb.DMatrix(features), output_margin=True),
                               direct.predict(xgb.DMatrix(features), output_margin=True), rtol=1e-5, atol=1e-5)


def test_usecase_window_option_changes_the_features(site, data, first_update):
    fed = site.federation.model_copy(update={"usecase_options": {"window": 1}})
    other = market.MarketSite(fed, "FD001", site.exchange)
    assert _trees(market.train_update(other, data, None).model) != _trees(first_update.model)


def test_continuing_with_parallel_trees(site, data):
    fed = site.federation.model_copy(update={"model": {**site.federation.model, "num_parallel_tree": 2}})
    forest = market.MarketSite(fed, "FD001", site.exchange)
    global_doc = aggregate_bagging(None, [market.train_update(forest, data, None)])
    assert tree_count(market.train_update(forest, data, global_doc).model) == 2 * K


# --- evaluate -----------------------------------------------------------------------------------------------


def test_evaluate_models_reports_both_models(site, data, first_update):
    global_doc = aggregate_bagging(None, [first_update])
    result = market.evaluate_models(site, data, global_doc, 1)
    assert result["market"] == "FD001" and result["train_rows"] == len(data.train)
    for name in ("federated", "local_only"):
        metrics, value = result[name]["metrics"], result[name]["value"]
        assert math.isfinite(metrics["auc"]) and 0.5 < metrics["auc"] <= 1.0
        assert metrics["rows"] == len(data.test)
        assert {"cost_no_model", "cost_model", "savings", "programme_cost", "roi"} <= set(value)
        assert value["engines"] == 100 and value["savings"] == value["cost_no_model"] - value["cost_model"]
    # A one-market federation after one round is the local-only model at the same number of trees.
    assert result["federated"]["metrics"] == pytest.approx(result["local_only"]["metrics"])
    assert list(site.state_dir.glob("local-only-*.json"))  # the local-only model is cached in the market's state


# --- fingerprints and failures ------------------------------------------------------------------------------


def test_fingerprint_changes_when_one_byte_changes(tmp_path):
    folder = tmp_path / "FD001"
    shutil.copytree(DATA / "FD001", folder)
    files = [folder / "train.parquet", folder / "test.parquet"]
    before = market.fingerprint(files)
    assert before == market.fingerprint([DATA / "FD001" / "test.parquet", DATA / "FD001" / "train.parquet"])
    raw = bytearray(files[1].read_bytes())
    raw[len(raw) // 2] ^= 0x01
    files[1].write_bytes(bytes(raw))
    assert market.fingerprint(files) != before


def test_describe_failure_hides_the_data_folder_but_names_file_and_field(site, tmp_path):
    folder = tmp_path / "secret-location" / "FD001"
    shutil.copytree(DATA / "FD001", folder)
    pd.read_parquet(folder / "train.parquet").drop(columns="sensor_7").to_parquet(folder / "train.parquet")
    broken = _with_data(site, folder)
    with pytest.raises(MarketDataError) as info:
        market.load_data(broken)
    assert str(folder) in str(info.value)  # inside the market the full path is fine
    note = market.describe_failure(broken, info.value)
    assert note["file"] == "train.parquet" and note["field"] == "sensor_7"
    assert "secret-location" not in note["reason"] and str(tmp_path) not in note["reason"]
    assert "<market data>/train.parquet" in note["reason"] and "sensor_7" in note["reason"]


def test_describe_failure_hides_the_path_in_any_error(site):
    exc = OSError(f"cannot open {site.data_dir}/train.parquet")
    assert market.describe_failure(site, exc) == {"reason": "OSError: cannot open <market data>/train.parquet"}


def test_write_status_posts_a_note_without_rows(site):
    market.write_status(site, 4, "excluded", reason="no luck")
    note = json.loads(site.exchange.get(site.exchange.status(4, "FD001")))
    assert note == {"market": "FD001", "round": 4, "status": "excluded", "reason": "no luck"}
    assert json.loads((site.state_dir / "last-status.json").read_text()) == note


# --- the global model ---------------------------------------------------------------------------------------


def test_fetch_global_model_checks_the_aggregators_signature(site, first_update, tmp_path):
    run = central.start_run(site.federation.model_copy(update={"runs_dir": tmp_path / "runs"}), "run")
    here = market.MarketSite(site.federation, "FD001", run.exchange)
    assert market.fetch_global_model(here, 1) == (None, run.genesis)  # round 1 starts from no model, in this run
    doc = aggregate_bagging(None, [first_update])
    sha = central.publish_global_model(run, 1, doc)
    assert market.fetch_global_model(here, 2) == (central.bind_to_run(doc, run.genesis), sha)

    path = run.exchange.global_model(1)
    original = run.exchange.get(path)
    tampered = original.replace(b'"base_score"', b'"base_score" ', 1)  # same model to a JSON parser
    assert tampered != original and json.loads(tampered) == json.loads(original)
    run.exchange.put(path, tampered)
    with pytest.raises(SealError, match="do not match the signed sha256"):
        market.fetch_global_model(here, 2)


def test_round_one_starts_from_the_runs_signed_genesis_and_a_forged_one_is_refused(site, tmp_path):
    run = central.start_run(site.federation.model_copy(update={"runs_dir": tmp_path / "runs"}), "run")
    here = market.MarketSite(site.federation, "FD001", run.exchange)
    path = run.exchange.genesis()
    genuine, genuine_sig = run.exchange.get(path), run.exchange.get(path + ".sig")
    forged = genuine.replace(b'"nonce": "', b'"nonce": "0', 1)  # another run's genesis, or a made-up one
    fed = site.federation.name

    def refused(signature: bytes | None, match: str) -> None:
        run.exchange.put(path, forged)
        run.exchange.remove(path + ".sig")
        if signature is not None:
            run.exchange.put(path + ".sig", signature)
        with pytest.raises(SealError, match=match):
            market.fetch_global_model(here, 1)

    refused(None, "no signed run genesis")  # unsigned
    refused(genuine_sig, "run genesis refused: .*do not match the signed sha256")  # the real signature, other bytes
    keys.generate_identity(tmp_path / "rogue", "aggregator")  # a key pair under the aggregator's name
    rogue = keys.load_identity(tmp_path / "rogue", "aggregator")
    refused(sealing.sign_model(forged, federation=fed, round=0, signer=rogue, kind=sealing.GENESIS_KIND),
            "run genesis refused: invalid signature")
    aggregator = keys.load_identity(site.federation.keys_dir, "aggregator")
    # the aggregator's own signature, but of another kind (fedavg's round-0 model is signed for round 0 too)
    refused(sealing.sign_model(forged, federation=fed, round=0, signer=aggregator),
            "run genesis refused: .*kind 'global-model'")
    refused(sealing.sign_model(forged, federation="other-fed", round=0, signer=aggregator, kind=sealing.GENESIS_KIND),
            "run genesis refused: .*federation 'other-fed'")
    run.exchange.put(path, genuine)
    run.exchange.put(path + ".sig", genuine_sig)
    assert market.fetch_global_model(here, 1) == (None, run.genesis)


def test_fetch_global_model_rejects_a_model_signed_by_someone_else(site, first_update, tmp_path):
    run = central.start_run(site.federation.model_copy(update={"runs_dir": tmp_path / "runs"}), "run")
    here = market.MarketSite(site.federation, "FD001", run.exchange)
    central.publish_global_model(run, 1, aggregate_bagging(None, [first_update]))
    keys.generate_identity(tmp_path / "rogue", "aggregator")
    forged = central.Run(run.federation.model_copy(update={"keys_dir": tmp_path / "rogue"}), "run", run.root,
                         run.exchange)
    central.publish_global_model(forged, 1, aggregate_bagging(None, [first_update]))
    with pytest.raises(SealError, match="invalid signature on global model"):
        market.fetch_global_model(here, 2)
