"""fedpipe.screening on real updates: trees trained by fedpipe.market on the vendored C-MAPSS markets."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from fedpipe import market, screening
from fedpipe.aggregation import _model, to_booster
from fedpipe.config import load_federation
from fedpipe.metrics import classification_metrics
from fedpipe.storage import Exchange

DATA = Path(__file__).resolve().parents[1] / "usecases" / "predictive_maintenance" / "data"
MARKETS = ("FD001", "FD003", "FD004")
K = 3


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    root = tmp_path_factory.mktemp("screening")
    markets = "\n".join(f'[markets.{m}]\ndata = "{DATA / m}"\nsubsample = 0.2\nstate = "{root / m}"\n' for m in MARKETS)
    (root / "fed.toml").write_text(f"""
[federation]
name = "screening"
usecase = "predictive_maintenance"
trees_per_round = {K}
quorum = 1
runs_dir = "{root / 'runs'}"
keys_dir = "{root / 'keys'}"
[model]
max_depth = 3
base_score = 0.5
{markets}""", encoding="utf-8")
    return load_federation(root / "fed.toml")


@pytest.fixture(scope="module")
def sites(federation, tmp_path_factory):
    exchange = Exchange(tmp_path_factory.mktemp("exchange"))
    return {m: market.MarketSite(federation, m, exchange) for m in MARKETS}


@pytest.fixture(scope="module")
def data(sites):
    return {m: market.load_data(site) for m, site in sites.items()}


@pytest.fixture(scope="module")
def updates(sites, data):
    """Each market's first-round update, as its payload."""
    return {m: {"model": (u := market.train_update(sites[m], data[m], None)).model, "n_rows": u.n_rows}
            for m in MARKETS}


def poisoned(payload: dict, factor: float = -50.0) -> dict:
    """The same trees with every leaf multiplied by ``factor``: a sign-flipping, scaled attack."""
    payload = copy.deepcopy(payload)
    for tree in _model(payload["model"])["trees"]:
        for i, left in enumerate(tree["left_children"]):
            if left == -1:
                tree["split_conditions"][i] *= factor
                tree["base_weights"][i] *= factor
    return payload


def test_honest_updates_meet_every_limit(federation, updates):
    kept, rejected = screening.check_limits(federation, None, updates)
    assert sorted(kept) == list(MARKETS) and rejected == {}


def _mutate(payload, how):
    payload = copy.deepcopy(payload)
    trees = _model(payload["model"])["trees"]
    inner = next(i for i, left in enumerate(trees[0]["left_children"]) if left != -1)
    if how == "unknown feature":
        trees[0]["split_indices"][inner] = 999
    elif how == "child outside the tree":
        trees[0]["left_children"][inner] = 10_000
    elif how == "ragged arrays":
        trees[0]["base_weights"].pop()
    elif how == "another base_score":
        payload["model"]["learner"]["learner_model_param"]["base_score"] = "[8.5E-1]"
    elif how == "too many trees":
        model = _model(payload["model"])
        model["trees"] = model["trees"] + copy.deepcopy(model["trees"])
        model["tree_info"] = model["tree_info"] * 2
        model["iteration_indptr"] = list(range(len(model["trees"]) + 1))
    return payload


@pytest.mark.parametrize("how, says", [
    ("unknown feature", "splits on feature 999, the model has"),
    ("child outside the tree", "points outside the tree"),
    ("ragged arrays", "malformed"),
    ("too many trees", f"holds {2 * K} boosting iterations, the federation asks for {K}"),
    ("another base_score", "update has base_score [0.85], the federation agreed 0.5"),
])
def test_a_broken_update_is_rejected_with_the_reason_and_the_others_stay(federation, updates, how, says):
    payloads = {**updates, "FD003": _mutate(updates["FD003"], how)}
    kept, rejected = screening.check_limits(federation, None, payloads)
    assert sorted(kept) == ["FD001", "FD004"]
    assert "market 'FD003'" in rejected["FD003"] and says in rejected["FD003"]


def _losses(sites, data, candidates):
    """What each market would report: the loss of every candidate but its own, on its held-out rows."""
    reports = {}
    for m, site in sites.items():
        dtest = market._matrix(site, data[m].test)
        loss = lambda doc: classification_metrics(dtest.get_label(), to_booster(doc).predict(dtest))["log_loss"]  # noqa: E731
        reports[m] = screening.score_candidates(loss, {n: json.dumps(d).encode() for n, d in candidates.items()}, m)
    return reports


def test_holdout_check_rejects_a_poisoned_update_and_keeps_the_honest_ones(sites, data, updates):
    payloads = {**updates, "FD003": poisoned(updates["FD003"])}
    candidates = screening.candidate_models(None, payloads)
    assert set(candidates) == {screening.BASELINE, *MARKETS}
    assert to_booster(candidates[screening.BASELINE]).num_boosted_rounds() == 0
    reports = _losses(sites, data, candidates)
    assert all(m not in reports[m] for m in MARKETS)  # no market scores its own update
    kept, rejected = screening.judge(reports, payloads, bound=0.05)
    assert sorted(kept) == ["FD001", "FD004"]
    assert "rejected update: on 2 other market(s)' held-out data it raises the loss" in rejected["FD003"]


def test_holdout_check_keeps_every_honest_update(sites, data, updates):
    reports = _losses(sites, data, screening.candidate_models(None, updates))
    kept, rejected = screening.judge(reports, updates, bound=0.05)
    assert sorted(kept) == list(MARKETS) and rejected == {}


def test_an_envelope_over_the_size_limit_is_rejected_unopened(federation, updates, tmp_path):
    from fedpipe import central, keys

    fed = federation.model_copy(update={
        "runs_dir": tmp_path / "runs", "keys_dir": tmp_path / "keys",
        "screening": federation.screening.model_copy(update={"max_update_mb": 0.1}),
    })
    for party in ("aggregator", *MARKETS):
        keys.generate_identity(fed.keys_dir, party)
    run = central.start_run(fed, "sized")
    for name in MARKETS:
        payload = {**updates[name], "padding": "x" * 200_000} if name == "FD003" else updates[name]
        site = market.MarketSite(fed, name, run.exchange)
        run.exchange.put(run.exchange.update(1, name), market.seal_payload(site, 1, run.genesis, payload))
    opened, dropped = central.open_sealed(run, 1, run.genesis, "update")
    assert sorted(opened) == ["FD001", "FD004"]
    assert "oversized envelope" in dropped["FD003"] and f"limit of {int(0.1 * 2**20)}" in dropped["FD003"]
