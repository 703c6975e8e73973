"""fedavg in real rounds: a linear model whose weights are the row-weighted average of the markets' updates, in
clear or (secure aggregation) from masked sums only, with a market that drops after masking."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import flows.fedavg
from fedpipe import sealing, secagg
from fedpipe.central import Run, open_sealed
from fedpipe.config import load_federation
from fedpipe.storage import Exchange
from fedpipe.strategies import fedavg
from flows.round import federated_training

TOL = 1e-3  # fixed point has 2^-16 resolution per summed value; divided by thousands of rows it is far below this


def _model(run_dir: Path, round_: int) -> dict:
    return json.loads((run_dir / "models" / f"round-{round_:03d}.json").read_text())


def _opened_updates(config: Path, run_dir: Path, round_: int) -> dict[str, dict]:
    """What the aggregator decrypts from the round's sealed updates."""
    fed = load_federation(config)
    parent = sealing.sha256_hex((run_dir / "models" / f"round-{round_ - 1:03d}.json").read_bytes())
    opened, _ = open_sealed(Run(fed, run_dir.name, run_dir, Exchange(run_dir / "exchange")), round_, parent, "update")
    return opened


def _own(folders: dict[str, Path], market: str, name: str) -> dict:
    """A market's own record of what it masked (kept in its state folder, never sent in clear)."""
    return json.loads((folders[market].parent / "state" / "test-fed" / "secure-aggregation" / name).read_text())


def test_fedavg_run_averages_weights_by_rows_seals_them_and_resumes(federation):
    config, _ = federation(markets=("FD001", "FD002", "FD004"), rounds=2, quorum=3, strategy="fedavg")
    run_dir = Path(federated_training(config=str(config), rounds=1, run_id="fedavg"))
    start_bytes = (run_dir / "models" / "round-000.json").read_bytes()
    federated_training(config=str(config), rounds=2, resume="fedavg")  # round 2 from round 1's linear model
    assert (run_dir / "models" / "round-000.json").read_bytes() == start_bytes  # the scaler is not pooled again

    start, first, second = (_model(run_dir, r) for r in (0, 1, 2))
    assert start["family"] == "linear" and start["kind"] == "classification" and not any(start["coef"])
    assert second["mean"] == start["mean"] and second["features"] == start["features"]  # one pooled scaler
    updates = _opened_updates(config, run_dir, 2)
    assert sorted(updates) == ["FD001", "FD002", "FD004"]
    assert all(set(u) == {"coef", "intercept", "n_rows"} for u in updates.values())
    expected = fedavg.average_weights(first, [updates[m] for m in sorted(updates)])
    np.testing.assert_allclose(second["coef"], expected["coef"], rtol=1e-12)
    assert second["intercept"] == pytest.approx(expected["intercept"])
    record = json.loads((run_dir / "rounds.json").read_text())[1]
    assert record["contributors"] == {m: u["n_rows"] for m, u in updates.items()}

    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    last = metrics[(metrics["round"] == 2) & (metrics["market"] != "federation")]
    assert set(last["model"]) == {"federated", "local_only", "personalised"}
    assert set(last["market"]) == {"FD001", "FD002", "FD004"}
    assert last["log_loss"].notna().all() and (last["auc"] > 0.5).all()
    assert (pd.read_parquet(run_dir / "roi.parquet")["round"] == 2).any()

    # the exchange holds the weights only sealed: no market's update appears in clear anywhere in it
    public = {"global", "gate"}  # the signed global models (and the champion) are every market's to read
    exchange = [p for p in (run_dir / "exchange").rglob("*") if p.is_file() and not public & set(p.parts)]
    needles = [repr(u["coef"][0]).encode() for u in updates.values()] + [b'"coef"', b'"sumsq"']
    assert not [p for p in exchange for needle in needles if needle in p.read_bytes()]


def test_secure_fedavg_equals_plain_average_and_survives_a_dropout(federation, monkeypatch):
    markets = ("FD001", "FD002", "FD003", "FD004")
    config, folders = federation(markets=markets, rounds=1, quorum=3, strategy="fedavg", secure_aggregation=True)
    real_publish = flows.fedavg.publish

    def drop_fd004_weights(site, path, envelope):  # fault injection: FD004's link dies after it masked its weights
        if site.market == "FD004" and "round-001/updates/" in path:
            raise ConnectionError("injected fault: FD004 lost its link after masking")
        return real_publish(site, path, envelope)

    monkeypatch.setattr(flows.fedavg, "publish", drop_fd004_weights)
    run_dir = Path(federated_training(config=str(config), run_id="secure-fedavg"))

    # round 0: the scaler pooled from the masked sum equals the one pooled from the markets' own statistics
    start = _model(run_dir, 0)
    plain_scaler = fedavg.pooled_scaler([_own(folders, m, "round-000-scaler.json")["stats"] for m in markets])
    np.testing.assert_allclose(start["mean"], plain_scaler["mean"], rtol=1e-6, atol=TOL)
    np.testing.assert_allclose(start["scale"], plain_scaler["scale"], rtol=1e-6, atol=TOL)

    # round 1: FD004 masked, then dropped; the survivors' reveals remove its masks and the sum is theirs alone
    assert _own(folders, "FD004", "round-001-weights.json")["update"]
    survivors = ["FD001", "FD002", "FD003"]
    expected = fedavg.average_weights(start, [_own(folders, m, "round-001-weights.json")["update"] for m in survivors])
    first = _model(run_dir, 1)
    np.testing.assert_allclose(first["coef"], expected["coef"], atol=TOL)
    assert first["intercept"] == pytest.approx(expected["intercept"], abs=TOL)
    record = json.loads((run_dir / "rounds.json").read_text())[0]
    assert record["contributors"] == {m: None for m in survivors}  # row counts masked too
    assert "FD004" in record["dropped"]

    # what the aggregator decrypts is a masked vector only
    opened = _opened_updates(config, run_dir, 1)
    assert sorted(opened) == survivors
    for market, payload in opened.items():
        assert set(payload) == {"market", "secagg"} and payload["secagg"]["label"] == "weights"
        own = fedavg.weights_vector(_own(folders, market, "round-001-weights.json")["update"])
        assert np.mean(secagg.from_wire(payload["secagg"]["masked"]) == secagg.encode(own)) < 0.01
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    assert set(metrics["market"]) == {"federation"} and {"federated", "local_only"} <= set(metrics["model"])


def test_secure_fedavg_never_asks_for_the_seeds_of_a_market_whose_vector_arrived(federation, monkeypatch):
    """FD004's masked weights arrive one value too long. Recovering it like a dropout would have the survivors
    reveal their seeds with FD004 while the centre holds its vector (and so its weights): instead the round has no
    sum and fails its quorum with every market's reason, and no survivors' list or reveal is ever posted."""
    from fedpipe.errors import QuorumError

    markets = ("FD001", "FD002", "FD003", "FD004")
    config, _ = federation(markets=markets, rounds=1, quorum=3, strategy="fedavg", secure_aggregation=True)
    real_weights = flows.fedavg.weights_payload

    def long_fd004_weights(site, data, global_doc, round_):  # fault injection: FD004 masks one value too many
        payload = real_weights(site, data, global_doc, round_)
        if site.market == "FD004":
            masked = secagg.from_wire(payload["secagg"]["masked"])
            payload["secagg"]["masked"] = secagg.to_wire(np.append(masked, np.uint64(7)))
        return payload

    monkeypatch.setattr(flows.fedavg, "weights_payload", long_fd004_weights)
    with pytest.raises(QuorumError, match=r"(?s)round 1.*FD004: rejected weights: masked vector of .*"
                                          r"may not ask for the survivors' seeds"):
        federated_training(config=str(config), run_id="secure-misfit")

    run_dir = config.parent / "runs" / "secure-misfit"
    failure = json.loads((run_dir / "failure.json").read_text())
    assert failure["round"] == 1 and sorted(failure["dropped"]) == list(markets)
    assert all("['FD004']" in why for why in failure["dropped"].values())
    secagg_dir = run_dir / "exchange" / "round-001" / "secagg"
    assert (secagg_dir / "roster-weights.json").exists()  # the step did run, masked
    assert not list(secagg_dir.glob("survivors*")) and not list(secagg_dir.glob("reveal*"))
    assert (run_dir / "exchange" / "round-001" / "updates" / "FD004.sealed").exists()  # it did arrive
