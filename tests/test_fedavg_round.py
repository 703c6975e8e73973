"""fedpipe.fedavg_round without Prefect, on the vendored markets: scaler, updates, checks, averaging, evaluation,
and the same steps masked (secure aggregation) giving the same model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from fedpipe import fedavg_round as f
from fedpipe import models, secagg
from fedpipe.config import load_federation
from fedpipe.errors import ConfigError
from fedpipe.market import MarketSite, load_data
from fedpipe.storage import Exchange
from fedpipe.strategies import fedavg

DATA = Path(__file__).resolve().parents[1] / "usecases" / "predictive_maintenance" / "data"
MARKETS = ["FD001", "FD002", "FD003"]


def _federation(tmp_path, usecase=None, markets=MARKETS, **federation):
    doc = {"usecase": usecase or {},
           "federation": {"name": "f", "usecase": "predictive_maintenance", "quorum": 3, "strategy": "fedavg",
                          "runs_dir": str(tmp_path / "runs"), "keys_dir": str(tmp_path / "keys"), **federation},
           "markets": {m: {"data": str(DATA / m), "subsample": 0.2, "state": str(tmp_path / m)} for m in markets}}
    path = tmp_path / "f.toml"
    path.write_bytes(tomli_w.dumps(doc).encode())
    return load_federation(path)


@pytest.fixture
def federation_run(tmp_path, monkeypatch):
    from fedpipe.central import start_run

    def build(markets=MARKETS, **federation):
        fed = _federation(tmp_path, markets=markets, **federation)
        run = start_run(fed, "r")
        sites = {m: MarketSite(fed, m, run.exchange) for m in markets}
        for site in sites.values():
            site.identity()  # each market's keys, as on its first round
        return run, sites, {m: load_data(s) for m, s in sites.items()}

    monkeypatch.chdir(tmp_path)
    return build


def test_plain_round_pools_checks_averages_and_evaluates(federation_run):
    run, sites, data = federation_run()
    stats = {m: f.scaler_payload(sites[m], data[m]) for m in MARKETS}
    kept, rejected = f.check_scaler_stats(stats, "binary:logistic")
    assert sorted(kept) == MARKETS and not rejected
    start = f.initial_model(kept, "binary:logistic")
    assert models.is_linear(start) and start["features"] == stats["FD001"]["features"]

    updates = {m: f.weights_payload(sites[m], data[m], start, 1) for m in MARKETS}
    bad = {**updates, "FD003": {**updates["FD003"], "coef": updates["FD003"]["coef"][:-1]}}
    kept, rejected = f.check_weight_updates(start, bad)
    assert sorted(kept) == ["FD001", "FD002"] and "coef holds" in rejected["FD003"]
    kept, rejected = f.check_weight_updates(start, updates)
    model = f.aggregate_weights(start, kept)
    rows = np.array([updates[m]["n_rows"] for m in MARKETS], dtype=float)
    np.testing.assert_allclose(model["coef"], (rows / rows.sum()) @ np.array([updates[m]["coef"] for m in MARKETS]))

    evaluation = f.evaluate_linear(sites["FD001"], data["FD001"], model, 1)
    assert {"federated", "local_only", "personalised"} <= set(evaluation)
    for name in ("federated", "local_only", "personalised"):
        assert set(evaluation[name]) == {"metrics", "value", "stats"}
        assert 0 < evaluation[name]["metrics"]["log_loss"] < 1
    from fedpipe.secure_round import flatten

    assert flatten(evaluation)[0] == "classification"  # secure evaluation can mask it like a tree model's


def test_regression_task_pools_the_target_and_reports_regression_metrics(tmp_path, monkeypatch):
    """[usecase] task = "rul": SGD regression on the standardised target, MAE in cycles."""
    monkeypatch.chdir(tmp_path)
    fed = _federation(tmp_path, usecase={"task": "rul"})
    site = MarketSite(fed, "FD001", Exchange(tmp_path / "x"))
    data = load_data(site)
    stats = f.scaler_payload(site, data)
    assert {"y_sum", "y_sumsq"} <= set(stats)
    start = f.initial_model({"FD001": stats}, f.objective(fed))
    assert start["kind"] == "regression" and start["y_scale"] > 1
    model = f.aggregate_weights(start, {"FD001": f.weights_payload(site, data, start, 1)})
    evaluation = f.evaluate_linear(site, data, model, 1)
    assert evaluation["federated"]["stats"]["kind"] == "regression"
    assert 0 < evaluation["federated"]["metrics"]["mae"] < 100  # cycles, capped RUL


def test_bad_payloads_are_dropped_with_a_reason():
    start = fedavg.initial_model({"n": 10, "mean": [0.0, 0.0], "scale": [1.0, 1.0]}, "classification", ["a", "b"])
    kept, rejected = f.check_weight_updates(start, {
        "ok": {"coef": [0.1, 0.2], "intercept": 0.0, "n_rows": 5},
        "nan": {"coef": [float("nan"), 0.2], "intercept": 0.0, "n_rows": 5},
        "empty": {"coef": [0.1, 0.2], "intercept": 0.0, "n_rows": 0},
        "extra": {"coef": [0.1, 0.2], "intercept": 0.0, "n_rows": 5, "model": {}},
    })
    assert list(kept) == ["ok"]
    assert "finite" in rejected["nan"] and "positive" in rejected["empty"] and "exactly" in rejected["extra"]
    stats = {"a": {"n": 3, "sum": [1.0, 2.0], "sumsq": [1.0, 4.0], "features": ["a", "b"]},
             "b": {"n": 4, "sum": [1.0, 2.0], "sumsq": [1.0, 4.0], "features": ["a", "b"]},
             "c": {"n": 4, "sum": [1.0], "sumsq": [1.0], "features": ["a"]}}
    kept, rejected = f.check_scaler_stats(stats, "binary:logistic")
    assert sorted(kept) == ["a", "b"] and "columns" in rejected["c"]
    with pytest.raises(ValueError, match="no linear global model|linear global model"):
        f.aggregate_weights(None, {"a": {"coef": [0.0], "intercept": 0.0, "n_rows": 1}})


def test_masked_scaler_and_weights_give_the_plain_model(federation_run):
    """Secure mode on plain functions: rosters per label, masked vectors, unmasked sums equal the plain ones."""
    from fedpipe.secure_round import fetch_roster, masked_vectors, publish_roster

    run, sites, data = federation_run(secure_aggregation=True)
    publish_roster(run, 0, MARKETS, f.SCALER)
    masked = {m: f.scaler_payload(sites[m], data[m]) for m in MARKETS}
    assert all(set(p) == {"market", "secagg"} for p in masked.values())
    _, vectors, refused = masked_vectors(masked, MARKETS)
    assert not refused
    start = f.initial_model(f.summed(f.unmask(vectors, MARKETS, {}), MARKETS,
                                     features=masked["FD001"]["secagg"]["features"]), "binary:logistic")
    own = [json.loads((sites[m].state_dir / "secure-aggregation" / "round-000-scaler.json")
                                    .read_text())["stats"] for m in MARKETS]
    np.testing.assert_allclose(start["mean"], fedavg.pooled_scaler(own)["mean"], rtol=1e-6, atol=1e-6)  # fixed point

    publish_roster(run, 1, MARKETS, f.WEIGHTS)
    with pytest.raises(secagg.SecAggError, match="no roster.json"):
        fetch_roster(sites["FD001"], 1)  # the weights roster is not the evaluation's: labels keep them apart
    masked = {m: f.weights_payload(sites[m], data[m], start, 1) for m in MARKETS}
    _, vectors, _ = masked_vectors(masked, MARKETS)
    assert f.misfits(vectors, f.WEIGHTS, start) == {}
    short = {**vectors, "FD003": vectors["FD003"][:-1]}  # a market masking something else: left out alone
    assert f"expected {len(start['mean']) + 2}" in f.misfits(short, f.WEIGHTS, start)["FD003"]
    model = f.aggregate_weights(start, f.summed(f.unmask(vectors, MARKETS, {}), MARKETS))
    plain = fedavg.average_weights(start, [_plain_update(sites[m], data[m], start) for m in MARKETS])
    np.testing.assert_allclose(model["coef"], plain["coef"], atol=1e-3)


def test_a_wrong_length_masked_vector_is_not_recovered_like_a_dropout(federation_run):
    """The attack: FD004's masked weights reach the centre one value too long. Were FD004 treated as a dropout, the
    survivors would reveal their seeds with it and the centre could unmask FD004's weights and row count. Instead
    the step has no sum (the round then fails its quorum, each market told why) and no seed is ever asked for."""
    from fedpipe.market import seal_payload
    from fedpipe.secure_round import (_doc_path, delivered, mask_values, masked_vectors, publish_roster,
                                      publish_survivors, reveal, withhold_sum)

    markets = [*MARKETS, "FD004"]
    run, sites, data = federation_run(markets=markets, secure_aggregation=True)
    scaler = fedavg.pooled_scaler([fedavg.feature_stats(f._inputs(sites[m], data[m].train)[0].to_numpy("float64"))
                                   for m in markets])
    start = fedavg.initial_model(scaler, "classification")
    publish_roster(run, 1, markets, f.WEIGHTS)
    payloads = {m: f.weights_payload(sites[m], data[m], start, 1) for m in MARKETS}
    own = fedavg.weights_vector(_plain_update(sites["FD004"], data["FD004"], start))
    payloads["FD004"] = mask_values(sites["FD004"], 1, np.append(own, 0.0), kind=f.WEIGHTS, label=f.WEIGHTS)
    for m, payload in payloads.items():  # every envelope reached the centre
        run.exchange.put(run.exchange.update(1, m), seal_payload(sites[m], 1, "ab" * 32, payload))

    # the centre's steps, as flows.fedavg._collect takes them
    _, vectors, refused = masked_vectors(payloads, markets)
    assert not refused and delivered(run.exchange, 1, markets, f.WEIGHTS) == set(markets)
    misfit = f.misfits(vectors, f.WEIGHTS, start)
    assert list(misfit) == ["FD004"]
    summed, why = withhold_sum(markets, payloads, {m: v for m, v in vectors.items() if m not in misfit}, misfit)
    assert summed == {} and sorted(why) == markets and "masked vector of" in why["FD004"]
    assert all("['FD004']" in w and "may not ask for the survivors' seeds" in w for w in why.values())
    with pytest.raises(secagg.SecAggError, match=r"seeds with \['FD004'\]"):
        publish_survivors(run, 1, MARKETS, f.WEIGHTS)
    assert not run.exchange.exists(_doc_path(run.exchange, 1, "survivors-weights.json"))
    with pytest.raises(secagg.SecAggError, match="published no survivors-weights.json"):
        reveal(sites["FD001"], 1, f.WEIGHTS)

    # what the guard prevents: with the survivors' seeds, FD004's vector alone opens to its weights
    ids = {m: sites[m].identity() for m in markets}
    opened = vectors["FD004"]
    mask_label = json.loads((sites["FD004"].state_dir / "secure-aggregation" / "round-001-weights.json")
                            .read_text())["mask_label"]
    with np.errstate(over="ignore"):
        for m in MARKETS:
            seed = secagg.pair_seed(ids[m], ids["FD004"].public, federation="f", round=1, label=mask_label)
            opened = opened - secagg._signed_mask("FD004", m, seed, opened.size)  # FD004's own masks off
    np.testing.assert_allclose(secagg.decode(opened)[:-1], own, atol=1e-4)


def _plain_update(site, data, start):
    features, y = f._inputs(site, data.train)
    return fedavg.local_update(start, models.linear_inputs(start, features), y, epochs=f.EPOCHS,
                               seed=site.federation.seed + 1)


def test_fedavg_refuses_holdout_screening(tmp_path):
    with pytest.raises(ConfigError, match="screening.holdout_check.*fedavg"):
        path = tmp_path / "g.toml"
        path.write_bytes(tomli_w.dumps({
            "federation": {"name": "g", "usecase": "predictive_maintenance", "quorum": 2, "strategy": "fedavg"},
            "screening": {"holdout_check": True},
            "markets": {m: {"data": str(DATA / m)} for m in MARKETS}}).encode())
        load_federation(path)
