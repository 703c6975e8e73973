"""fedpipe.central on a small real federation: three C-MAPSS markets, real trees, real keys, all in tmp_path."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from fedpipe import central, keys, market, sealing
from fedpipe.aggregation import to_booster, tree_count
from fedpipe.config import load_federation
from fedpipe.errors import QuorumError, SealError
from fedpipe.storage import Exchange
from fedpipe.usecase import get_usecase

DATA = Path(__file__).resolve().parents[1] / "usecases" / "predictive_maintenance" / "data"
MARKETS = ("FD001", "FD002", "FD003")
K = 2  # trees per market per round


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    """A federation file in tmp: copied market folders, keys for every party, runs and state in tmp."""
    root = tmp_path_factory.mktemp("federation")
    text = f"""
[federation]
name = "test-fed"
usecase = "predictive_maintenance"
rounds = 2
trees_per_round = {K}
quorum = 2
runs_dir = "{root / 'runs'}"
keys_dir = "{root / 'keys'}"

[model]
max_depth = 3
base_score = 0.5
"""
    for name in MARKETS:
        shutil.copytree(DATA / name, root / "data" / name)
        text += f'\n[markets.{name}]\ndata = "data/{name}"\nsubsample = 0.2\nstate = "state/{name}"\n'
    (root / "fed.toml").write_text(text, encoding="utf-8")
    fed = load_federation(root / "fed.toml")
    for party in ("aggregator", *MARKETS):
        keys.generate_identity(fed.keys_dir, party)
    return fed


@pytest.fixture(scope="module")
def trained(federation, tmp_path_factory):
    """Each market's data and its real round-1 update payload, as the market task builds it."""
    scratch = Exchange(tmp_path_factory.mktemp("scratch"))
    out = {}
    for name in MARKETS:
        site = market.MarketSite(federation, name, scratch)
        data = market.load_data(site)
        update = market.train_update(site, data, None)
        out[name] = (data, {"model": update.model, "n_rows": update.n_rows})
    return out


@pytest.fixture()
def payloads(trained):
    return {name: payload for name, (_, payload) in trained.items()}


@pytest.fixture()
def run(federation, tmp_path):
    return central.start_run(federation.model_copy(update={"runs_dir": tmp_path / "runs"}), "run-1")


@pytest.fixture(scope="module")
def evaluations(federation, trained, tmp_path_factory):
    """Real evaluations of the round-1 global model by FD001 and FD003."""
    doc = central.aggregate_round(None, {n: p for n, (_, p) in trained.items()}, 2, 1)
    scratch = Exchange(tmp_path_factory.mktemp("scratch"))
    return {name: market.evaluate_models(market.MarketSite(federation, name, scratch), trained[name][0], doc, 1)
            for name in ("FD001", "FD003")}


def _site(run, name):
    return market.MarketSite(run.federation, name, run.exchange)


def _post(run, name, payload, round_=1, parent=None):
    """Seal ``payload`` as market ``name`` and post it to its own slot, as the market flow does (by default on the
    run's genesis, as in round 1)."""
    parent = run.genesis if parent is None else parent
    run.exchange.put(run.exchange.update(round_, name), market.seal_payload(_site(run, name), round_, parent, payload))


# --- opening sealed updates ---------------------------------------------------------------------------------


def test_valid_updates_open(run, payloads):
    for name in MARKETS:
        _post(run, name, payloads[name])
    opened, dropped = central.open_sealed(run, 1, run.genesis, "update")
    assert dropped == {}
    assert opened == payloads  # the trees and row counts, exactly as the markets sealed them


def _wrong_key(run, payloads, tmp_path):
    keys.generate_identity(tmp_path / "rogue", "FD002")  # someone else's key pair under FD002's name
    return sealing.seal_update(
        json.dumps(payloads["FD002"]).encode(), federation=run.federation.name, round=1, market="FD002",
        parent=run.genesis,
        recipient=keys.load_public_identity(run.federation.keys_dir, "aggregator"),
        signer=keys.load_identity(tmp_path / "rogue", "FD002"),
    )


def _flipped(run, payloads, tmp_path):
    envelope = bytearray(market.seal_payload(_site(run, "FD002"), 1, run.genesis, payloads["FD002"]))
    envelope[len(envelope) // 2] ^= 0x01
    return bytes(envelope)


TAMPERED = {
    # id: (the bytes found in FD002's round-1 slot, what the reason must say)
    "signed with the wrong key": (_wrong_key, r"invalid signature on update from market 'FD002'"),
    "sealed for another round": (lambda run, p, _: market.seal_payload(_site(run, "FD002"), 2, run.genesis,
                                                                    p["FD002"]),
                                 r"round 2, expected 1"),
    "sealed on a stale parent": (lambda run, p, _: market.seal_payload(_site(run, "FD002"), 1, "ab" * 32,
                                                                       p["FD002"]), r"parent model abababababab"),
    "bytes flipped": (_flipped, r"invalid signature .*tampered"),
    "another market's envelope": (lambda run, p, _: market.seal_payload(_site(run, "FD001"), 1, run.genesis,
                                                                         p["FD001"]),
                                  r"'FD001'"),
    "not an envelope": (lambda *_: b'{"model": {}, "n_rows": 10}', r"bad magic"),
}


@pytest.mark.parametrize("make, reason", TAMPERED.values(), ids=TAMPERED.keys())
def test_a_bad_envelope_is_dropped_with_a_reason_and_the_others_open(run, payloads, tmp_path, make, reason):
    _post(run, "FD001", payloads["FD001"])
    _post(run, "FD003", payloads["FD003"])
    run.exchange.put(run.exchange.update(1, "FD002"), make(run, payloads, tmp_path))
    opened, dropped = central.open_sealed(run, 1, run.genesis, "update")
    assert opened == {"FD001": payloads["FD001"], "FD003": payloads["FD003"]}
    assert list(dropped) == ["FD002"]
    assert dropped["FD002"].startswith("rejected update: ")
    assert re.search(reason, dropped["FD002"]), dropped["FD002"]


def test_envelope_in_another_markets_slot_is_named_as_such(run, payloads):
    envelope = market.seal_payload(_site(run, "FD001"), 1, run.genesis, payloads["FD001"])
    run.exchange.put(run.exchange.update(1, "FD002"), envelope)
    _, dropped = central.open_sealed(run, 1, run.genesis, "update")
    assert "FD002's slot" in dropped["FD002"] and "unknown market" not in dropped["FD002"]


def test_status_notes_explain_missing_updates(run, payloads):
    _post(run, "FD001", payloads["FD001"])
    why = "market 'FD002': <market data>/train.parquet: field 'sensor_4': 3 null values"
    market.write_status(_site(run, "FD002"), 1, "excluded", reason=why, file="train.parquet", field="sensor_4")
    # FD003 posts nothing at all.
    opened, dropped = central.open_sealed(run, 1, run.genesis, "update")
    assert list(opened) == ["FD001"]
    assert dropped == {"FD002": why, "FD003": "no update delivered"}


def test_status_sealed_without_an_envelope_is_reported(run):
    market.write_status(_site(run, "FD001"), 1, "sealed", trees=K)
    _, dropped = central.open_sealed(run, 1, run.genesis, "update")
    assert dropped["FD001"] == "status 'sealed' but no sealed update"


@pytest.mark.parametrize("note", [b"{not json", b"[]"])
def test_a_garbled_status_note_does_not_stop_the_others(run, payloads, note):
    _post(run, "FD001", payloads["FD001"])
    run.exchange.put(run.exchange.status(1, "FD002"), note)
    opened, dropped = central.open_sealed(run, 1, run.genesis, "update")
    assert list(opened) == ["FD001"] and "FD002" in dropped


def test_metrics_open_only_from_the_metrics_slot_and_for_this_model(run, payloads):
    sha = "cd" * 32
    evaluation = {"market": "FD001", "train_rows": 10}
    run.exchange.put(run.exchange.metrics(1, "FD001"),
                     market.seal_payload(_site(run, "FD001"), 1, sha, evaluation, kind="metrics"))
    # FD003 puts its trees where its metrics belong: an update must never pass as metrics.
    trees = market.seal_payload(_site(run, "FD003"), 1, sha, payloads["FD003"])
    run.exchange.put(run.exchange.metrics(1, "FD003"), trees)
    opened, dropped = central.open_sealed(run, 1, sha, "metrics")
    assert opened == {"FD001": evaluation}
    assert "holds 'update', expected 'metrics'" in dropped["FD003"]
    assert dropped["FD002"] == "no update delivered"


# --- aggregation and quorum ---------------------------------------------------------------------------------


def test_below_quorum_raises_and_says_no_model_was_written(run, payloads):
    _post(run, "FD001", payloads["FD001"])
    opened, _ = central.open_sealed(run, 1, run.genesis, "update")
    with pytest.raises(QuorumError, match="no global model written") as info:
        central.aggregate_round(None, opened, quorum=2, round_=1)
    assert "round 1: only 1 valid update(s) (FD001), quorum is 2" in str(info.value)
    with pytest.raises(QuorumError, match=r"only 0 valid update\(s\) \(none\)"):
        central.aggregate_round(None, {}, quorum=1, round_=3)


def test_at_quorum_the_global_model_holds_every_contributors_trees(trained, payloads):
    two = {n: payloads[n] for n in ("FD001", "FD003")}
    doc = central.aggregate_round(None, two, quorum=2, round_=1)
    assert tree_count(doc) == 2 * K
    # The step is the row-weighted average of the markets' own steps (base_score 0.5 is margin 0).
    dtest = xgb.DMatrix(get_usecase("predictive_maintenance").features(trained["FD001"][0].test.head(200), {}))
    margins = {n: to_booster(two[n]["model"]).predict(dtest, output_margin=True) for n in two}
    rows = {n: two[n]["n_rows"] for n in two}
    expected = sum(rows[n] * margins[n] for n in two) / sum(rows.values())
    np.testing.assert_allclose(to_booster(doc).predict(dtest, output_margin=True), expected, rtol=1e-5, atol=1e-5)


def test_one_incompatible_update_does_not_sink_the_round(payloads):
    bad = json.loads(json.dumps(payloads["FD003"]))
    bad["model"]["learner"]["learner_model_param"]["num_feature"] = "66"
    kept, dropped = central.screen_updates(None, {**payloads, "FD003": bad})
    assert "FD003" in dropped and "num_feature" in dropped["FD003"]
    doc = central.aggregate_round(None, kept, quorum=2, round_=1)
    assert tree_count(doc) == 2 * K


# --- recording a round --------------------------------------------------------------------------------------


def test_round_tables_federation_row_is_the_sums(evaluations):
    metrics, roi = central.round_tables(1, evaluations)
    assert sorted(zip(metrics["market"], metrics["model"])) == [
        ("FD001", "federated"), ("FD001", "local_only"), ("FD001", "personalised"),
        ("FD003", "federated"), ("FD003", "local_only"), ("FD003", "personalised"),
        ("federation", "federated"), ("federation", "local_only")]  # from summed sufficient statistics
    by = metrics.set_index(["market", "model"])
    assert by.loc[("federation", "federated"), "rows"] == by.loc[["FD001", "FD003"], "rows"].xs(
        "federated", level="model").sum()
    assert metrics["auc"].map(math.isfinite).all() and set(metrics["round"]) == {1}
    assert list(roi["market"]) == ["FD001", "FD003", "federation"]
    markets, fed = roi.iloc[:2], roi.iloc[2]
    for column in ("cost_no_model", "cost_model", "savings", "programme_cost", "savings_local_only",
                   "savings_vs_local_only"):
        assert fed[column] == pytest.approx(markets[column].sum()), column
    assert fed["roi"] == pytest.approx(central.ratio(markets["savings"].sum(), markets["programme_cost"].sum()))
    local_cost = sum(ev["local_only"]["value"]["programme_cost"] for ev in evaluations.values())
    assert fed["roi_local_only"] == pytest.approx(central.ratio(fed["savings_local_only"], local_cost))
    for name, ev in evaluations.items():
        row = roi.set_index("market").loc[name]
        assert row["savings"] == ev["federated"]["value"]["savings"]
        assert row["savings_local_only"] == ev["local_only"]["value"]["savings"]


def test_record_round_twice_replaces_rather_than_duplicates(run, evaluations):
    m1, r1 = central.round_tables(1, evaluations)
    m2, r2 = central.round_tables(2, evaluations)
    central.record_round(run, 1, "a" * 64, {"FD001": 10, "FD003": 20}, {"FD002": "no update delivered"}, m1, r1)
    central.record_round(run, 2, "b" * 64, {"FD001": 10}, {}, m2, r2)
    rerun = m1.assign(log_loss=9.0)
    central.record_round(run, 1, "c" * 64, {"FD001": 10, "FD003": 20}, {}, rerun, r1)

    metrics = pd.read_parquet(run.root / "metrics.parquet")
    roi = pd.read_parquet(run.root / "roi.parquet")
    assert metrics["round"].value_counts().to_dict() == {1: len(m1), 2: len(m2)}
    assert roi["round"].value_counts().to_dict() == {1: len(r1), 2: len(r2)}
    assert (metrics.loc[metrics["round"] == 1, "log_loss"] == 9.0).all()
    assert (metrics.loc[metrics["round"] == 2, "log_loss"] != 9.0).all()
    rounds = json.loads((run.root / "rounds.json").read_text())
    assert sorted(r["round"] for r in rounds) == [1, 2]
    first = next(r for r in rounds if r["round"] == 1)
    assert first["model_sha256"] == "c" * 64 and first["dropped"] == {}
    assert first["model"] == "models/round-001.json"


# --- publishing and runs ------------------------------------------------------------------------------------


def test_published_global_model_verifies_and_matches_the_run_copy(run, payloads, trained):
    doc = central.aggregate_round(None, payloads, quorum=2, round_=1)
    sha = central.publish_global_model(run, 1, doc)
    raw = run.exchange.get(run.exchange.global_model(1))
    signature = run.exchange.get(run.exchange.global_model(1) + ".sig")
    aggregator = keys.load_public_identity(run.federation.keys_dir, "aggregator")
    sealing.verify_model(raw, signature, federation="test-fed", round=1, signer=aggregator)
    assert sha == sealing.sha256_hex(raw)
    assert run.model_path(1).read_bytes() == raw
    with pytest.raises(SealError, match="round 1, expected 2"):  # cannot be passed off as another round's model
        sealing.verify_model(raw, signature, federation="test-fed", round=2, signer=aggregator)
    # What a market fetches for round 2 is this model, with this parent hash.
    fetched, parent = market.fetch_global_model(_site(run, "FD001"), 2)
    assert parent == sha and fetched == central.bind_to_run(doc, run.genesis)  # the model, naming its run


def test_start_run_points_latest_at_the_run(federation, tmp_path):
    fed = federation.model_copy(update={"runs_dir": tmp_path / "runs"})
    first = central.start_run(fed, "first")
    latest = tmp_path / "runs" / "latest"
    assert first.root == tmp_path / "runs" / "first"
    assert latest.is_symlink() and latest.resolve() == first.root.resolve()
    assert (first.root / "federation.toml").read_bytes() == federation.source.read_bytes()
    second = central.start_run(fed, "second")
    assert latest.resolve() == second.root.resolve()
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["first", "latest", "second"]
    assert second.exchange.root == str(second.root / "exchange")


def test_a_market_the_centre_dropped_stays_out_even_if_its_update_lands_late(run, payloads):
    _post(run, "FD001", payloads["FD001"])
    _post(run, "FD002", payloads["FD002"])  # a timed-out run that was not yet stopped still delivers
    note = {"market": "FD002", "round": 1, "status": "dropped", "reason": "market-train did not finish within 90 s"}
    run.exchange.put(run.exchange.dropped(1, "FD002"), json.dumps(note).encode())
    opened, dropped = central.open_sealed(run, 1, run.genesis, "update")
    assert "FD002" not in opened and "FD001" in opened
    assert dropped["FD002"] == "market-train did not finish within 90 s"


# --- cyclic visits ------------------------------------------------------------------------------------------


def test_visit_model_is_what_the_next_market_starts_from_and_is_not_a_global_model(run, payloads):
    doc = central.aggregate_round(None, {"FD001": payloads["FD001"]}, 1, 1, "cyclic")
    sha = central.publish_visit_model(run, 1, 1, doc)
    fetched, parent = market.fetch_global_model(_site(run, "FD002"), 1, visits=1)
    assert (fetched, parent) == (central.bind_to_run(doc, run.genesis), sha)
    # The visit model cannot be passed off as a round's global model, nor as a later visit's.
    path = run.exchange.visit_model(1, 1)
    run.exchange.put(run.exchange.global_model(1), run.exchange.get(path))
    run.exchange.put(run.exchange.global_model(1) + ".sig", run.exchange.get(path + ".sig"))
    with pytest.raises(SealError, match="kind 'cyclic-visit-01'"):
        market.fetch_global_model(_site(run, "FD002"), 2)
    run.exchange.put(run.exchange.visit_model(1, 2), run.exchange.get(path))
    run.exchange.put(run.exchange.visit_model(1, 2) + ".sig", run.exchange.get(path + ".sig"))
    with pytest.raises(SealError, match="kind 'cyclic-visit-01'"):
        market.fetch_global_model(_site(run, "FD003"), 1, visits=2)


def test_updates_open_against_each_markets_own_parent(run, payloads):
    _post(run, "FD001", payloads["FD001"])
    _post(run, "FD002", payloads["FD002"], parent="a" * 64)
    _post(run, "FD003", payloads["FD003"])
    opened, dropped = central.open_sealed(run, 1, {"FD001": run.genesis, "FD002": "b" * 64}, "update")
    assert list(opened) == ["FD001"]
    assert "parent" in dropped["FD002"]  # it started from a model other than the visit model it was given
    assert "'FD003' was not asked to take part in round 1" in dropped["FD003"]  # no parent of its own: not counted
    only, _ = central.open_sealed(run, 1, {"FD001": run.genesis}, "update", markets=["FD001"])
    assert list(only) == ["FD001"]
    with pytest.raises(ValueError, match="sha256"):  # "" would fit every run's first round
        central.open_sealed(run, 1, "", "update")


# --- run binding: the genesis -------------------------------------------------------------------------------


def test_a_first_round_envelope_from_another_run_is_refused(federation, payloads, tmp_path):
    """Round 1 starts from the run's signed genesis: run A's round-1 update, copied into run B's slot, is refused."""
    fed = federation.model_copy(update={"runs_dir": tmp_path / "runs"})
    run_a, run_b = central.start_run(fed, "run-a"), central.start_run(fed, "run-b")
    assert run_a.genesis != run_b.genesis
    aggregator = keys.load_public_identity(fed.keys_dir, "aggregator")
    for run in (run_a, run_b):
        raw = run.exchange.get(run.exchange.genesis())
        sealing.verify_model(raw, run.exchange.get(run.exchange.genesis() + ".sig"), federation="test-fed", round=0,
                             signer=aggregator, kind=sealing.GENESIS_KIND)
        assert json.loads(raw)["run_id"] == run.run_id and (run.root / "genesis.json").read_bytes() == raw
        assert run.genesis == sealing.sha256_hex(raw)
        assert market.fetch_global_model(_site(run, "FD001"), 1) == (None, run.genesis)  # what markets seal against
    captured = market.seal_payload(_site(run_a, "FD001"), 1, run_a.genesis, payloads["FD001"])
    run_b.exchange.put(run_b.exchange.update(1, "FD001"), captured)
    _post(run_b, "FD002", payloads["FD002"])
    opened, dropped = central.open_sealed(run_b, 1, run_b.genesis, "update")
    assert list(opened) == ["FD002"]
    assert re.search(rf"market 'FD001' started from parent model {run_a.genesis[:12]}, expected "
                     rf"{run_b.genesis[:12]}: sealed in another run", dropped["FD001"]), dropped["FD001"]
    run_a.exchange.put(run_a.exchange.update(1, "FD001"), captured)  # in its own run it opens
    assert list(central.open_sealed(run_a, 1, run_a.genesis, "update")[0]) == ["FD001"]


def test_a_later_round_envelope_from_another_run_is_refused_too(federation, payloads, tmp_path):
    """Two runs that build the very same model still publish different bytes (the model names its run), so run A's
    round-2 update, which names run A's round-1 model as its parent, does not open in run B."""
    fed = federation.model_copy(update={"runs_dir": tmp_path / "runs"})
    run_a, run_b = central.start_run(fed, "same-a"), central.start_run(fed, "same-b")
    doc = central.aggregate_round(None, {n: payloads[n] for n in ("FD001", "FD003")}, quorum=2, round_=1)
    parent_a, parent_b = central.publish_global_model(run_a, 1, doc), central.publish_global_model(run_b, 1, doc)
    assert parent_a != parent_b
    for run, parent in ((run_a, parent_a), (run_b, parent_b)):
        global_doc, sha = market.fetch_global_model(_site(run, "FD001"), 2)
        assert sha == parent and global_doc["learner"]["attributes"]["fedpipe_run"] == run.genesis
        np.testing.assert_array_equal(to_booster(global_doc).get_dump(), to_booster(doc).get_dump())  # same trees
    run_b.exchange.put(run_b.exchange.update(2, "FD001"),
                       market.seal_payload(_site(run_a, "FD001"), 2, parent_a, payloads["FD001"]))
    _, dropped = central.open_sealed(run_b, 2, parent_b, "update")
    assert "sealed in another run" in dropped["FD001"], dropped["FD001"]


def test_a_restarted_run_gets_a_new_genesis(federation, payloads, tmp_path):
    """Resuming (start_run on the same folder) posts a new genesis: the interrupted attempt's updates do not count."""
    fed = federation.model_copy(update={"runs_dir": tmp_path / "runs"})
    first = central.start_run(fed, "again")
    _post(first, "FD001", payloads["FD001"])
    second = central.start_run(fed, "again")
    assert second.genesis != first.genesis
    assert market.fetch_global_model(_site(second, "FD001"), 1)[1] == second.genesis
    _, dropped = central.open_sealed(second, 1, second.genesis, "update")
    assert "started from parent model" in dropped["FD001"]


def test_left_out_market_stays_out_with_the_centres_reason(run, payloads):
    central.leave_out(run, 1, "FD003", "rejected update: trees do not fit")
    _post(run, "FD003", payloads["FD003"])
    opened, dropped = central.open_sealed(run, 1, run.genesis, "update")
    assert "FD003" not in opened and dropped["FD003"] == "rejected update: trees do not fit"


def test_gate_champion_cannot_pass_for_fedavgs_round_zero_model(run, payloads):
    """Both are signed for round 0; the champion's own signature kind keeps it from being fetched as a start model."""
    from fedpipe.fedavg_round import fetch_start_model
    from fedpipe.gate import gate_path, publish_champion

    publish_champion(run, b'{"family": "linear"}')
    champion = gate_path(run.exchange, "champion.json")
    run.exchange.put(run.exchange.global_model(0), run.exchange.get(champion))
    run.exchange.put(run.exchange.global_model(0) + ".sig", run.exchange.get(champion + ".sig"))
    with pytest.raises(SealError, match="kind 'gate-champion'"):
        fetch_start_model(_site(run, "FD001"), 1)
