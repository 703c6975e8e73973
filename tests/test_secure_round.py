"""fedpipe.secure_round without Prefect: the vector layout, the tables, and the config's refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from fedpipe.config import load_federation
from fedpipe.errors import ConfigError
from fedpipe.federation_metrics import federation_metrics, sufficient_stats
from fedpipe.secure_round import flatten, layout, totals_tables, unflatten

DATA = Path(__file__).resolve().parents[1] / "usecases" / "predictive_maintenance" / "data"


def _evaluation(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    y, s = rng.integers(0, 2, 200), rng.random(200)
    out = {"market": f"M{seed}", "train_rows": 1000 + seed}
    for i, model in enumerate(("federated", "local_only")):
        out[model] = {"metrics": {}, "stats": sufficient_stats("classification", y, s ** (i + 1)),
                      "value": {"cost_no_model": 1e5 * seed, "cost_model": 4e4 + seed, "savings": 6e4 - seed,
                                "programme_cost": 2.5e4 + 0.25 * seed}}
    return out


def test_flatten_unflatten_round_trip_and_sums():
    evs = [_evaluation(s) for s in (1, 2, 3)]
    kind, vector = flatten(evs[0])
    assert kind == "classification" and vector.size == sum(f[3] for f in layout(kind))
    total = unflatten(kind, np.sum([flatten(e)[1] for e in evs], axis=0))
    assert total["train_rows"] == sum(e["train_rows"] for e in evs)
    assert total["federated"]["value"]["savings"] == pytest.approx(sum(e["federated"]["value"]["savings"] for e in evs))
    metrics, roi = totals_tables(4, total)
    assert metrics.set_index("model").loc["local_only", "auc"] == pytest.approx(
        federation_metrics([e["local_only"]["stats"] for e in evs])["auc"])
    assert list(roi["market"]) == ["federation"] and roi.loc[0, "round"] == 4
    with pytest.raises(ValueError, match="regressionx"):
        layout("regressionx")


def _config(tmp_path, markets, **federation) -> Path:
    doc = {"federation": {"name": "f", "usecase": "predictive_maintenance", "quorum": 2, **federation},
           "model": {"base_score": 0.5},  # the default strategy (bagging) needs one agreed up front
           "markets": {m: {"data": str(DATA / m)} for m in markets}}
    path = tmp_path / "f.toml"
    path.write_bytes(tomli_w.dumps(doc).encode())
    return path


def test_two_market_federation_refuses_secure_aggregation(tmp_path):
    with pytest.raises(ConfigError, match="secure_aggregation.*at least 3 markets.*deduce the other"):
        load_federation(_config(tmp_path, ["FD001", "FD002"], secure_aggregation=True))
    assert not load_federation(_config(tmp_path, ["FD001", "FD002"])).secure_aggregation


def test_secure_aggregation_needs_a_quorum_of_three(tmp_path):
    with pytest.raises(ConfigError, match="quorum.*below 3"):
        load_federation(_config(tmp_path, ["FD001", "FD002", "FD003"], secure_aggregation=True, quorum=2))
    assert load_federation(_config(tmp_path, ["FD001", "FD002", "FD003"], secure_aggregation=True,
                                   quorum=3)).secure_aggregation


def test_roster_mask_reveal_unmask_without_prefect(tmp_path, monkeypatch):
    """The whole path on plain functions: signed roster, masking, one dropout, reveals, unmasked survivors' sum;
    a tampered roster and a second, different survivors' list are refused."""
    from fedpipe import secagg
    from fedpipe.central import start_run
    from fedpipe.errors import SealError
    from fedpipe.market import MarketSite
    from fedpipe.secure_round import (_doc_path, mask_evaluation, masked_vectors, publish_roster,
                                      publish_survivors, reveal, unmask_totals)

    monkeypatch.chdir(tmp_path)
    markets = ["FD001", "FD002", "FD003", "FD004"]
    fed = load_federation(_config(tmp_path, markets, secure_aggregation=True, quorum=3))
    run = start_run(fed, "r")
    sites = {m: MarketSite(fed, m, run.exchange) for m in markets}
    for site in sites.values():
        site.identity()  # each market's keys, as on its first round
    publish_roster(run, 1, markets)
    evs = {m: _evaluation(i + 1) for i, m in enumerate(markets)}
    opened = {m: mask_evaluation(sites[m], 1, evs[m]) for m in markets[:3]}  # FD004 masks too, then drops
    mask_evaluation(sites["FD004"], 1, evs["FD004"])
    kind, vectors, refused = masked_vectors(opened, markets)
    assert not refused and sorted(vectors) == markets[:3]
    with pytest.raises(secagg.SecAggError, match="FD004.*dropped out"):
        unmask_totals(kind, vectors, markets, {})
    publish_survivors(run, 1, markets[:3])
    revealed = {m: reveal(sites[m], 1) for m in markets[:3]}
    total = unmask_totals(kind, vectors, markets, revealed)
    assert total["federated"]["value"]["savings"] == pytest.approx(
        sum(evs[m]["federated"]["value"]["savings"] for m in markets[:3]), abs=1e-3)
    assert total["train_rows"] == sum(evs[m]["train_rows"] for m in markets[:3])

    publish_survivors(run, 1, ["FD001", "FD002", "FD004"])  # the centre changes its story: refused
    with pytest.raises(secagg.SecAggError, match="already revealed"):
        reveal(sites["FD001"], 1)
    path = _doc_path(run.exchange, 1, "roster.json")
    run.exchange.put(path, run.exchange.get(path).replace(b'"round":1', b'"round":1 '))
    with pytest.raises(SealError):
        mask_evaluation(sites["FD001"], 1, evs["FD001"])


def test_a_rerun_round_masks_afresh_and_same_masks_never_cover_two_different_vectors(tmp_path, monkeypatch):
    """Two vectors under the same masks would hand the centre their difference: refused. A new roster (a re-run
    round) brings a new session and new masks."""
    from fedpipe import secagg
    from fedpipe.central import start_run
    from fedpipe.market import MarketSite
    from fedpipe.secure_round import flatten, mask_evaluation, publish_roster

    monkeypatch.chdir(tmp_path)
    markets = ["FD001", "FD002", "FD003"]
    fed = load_federation(_config(tmp_path, markets, secure_aggregation=True, quorum=3))
    run = start_run(fed, "r")
    sites = {m: MarketSite(fed, m, run.exchange) for m in markets}
    for site in sites.values():
        site.identity()
    publish_roster(run, 1, markets)
    first = mask_evaluation(sites["FD001"], 1, _evaluation(1))
    assert mask_evaluation(sites["FD001"], 1, _evaluation(1)) == first  # the same figures again: the same bytes
    with pytest.raises(secagg.SecAggError, match="refusing to mask new ones with the same masks"):
        mask_evaluation(sites["FD001"], 1, _evaluation(2))

    publish_roster(run, 1, markets)  # the round is run again: fresh session
    again = mask_evaluation(sites["FD001"], 1, _evaluation(1))
    plain = flatten(_evaluation(1))[1]
    first_mask = secagg.from_wire(first["secagg"]["masked"]) - secagg.encode(plain)
    again_mask = secagg.from_wire(again["secagg"]["masked"]) - secagg.encode(plain)
    assert not (first_mask == again_mask).all()  # other masks for the same figures


def _secure_run(tmp_path, monkeypatch, markets):
    from fedpipe.central import start_run
    from fedpipe.market import MarketSite

    monkeypatch.chdir(tmp_path)
    fed = load_federation(_config(tmp_path, markets, secure_aggregation=True, quorum=3))
    run = start_run(fed, "r")
    sites = {m: MarketSite(fed, m, run.exchange) for m in markets}
    for site in sites.values():
        site.identity()
    return run, sites


def test_a_received_but_rejected_vector_is_never_recovered_like_a_dropout(tmp_path, monkeypatch):
    """The attack: FD004's masked evaluation reaches the centre but is rejected (sent with a figure in clear).
    Treated as a dropout, the survivors would reveal their seeds with FD004 and the centre, holding FD004's masked
    vector, could unmask it. Instead nothing is summed, and the survivors are never asked for those seeds."""
    from fedpipe import secagg
    from fedpipe.market import seal_payload
    from fedpipe.secure_round import (_doc_path, delivered, mask_evaluation, masked_vectors, publish_roster,
                                      publish_survivors, reveal, reveal_request, withhold_sum)

    markets = ["FD001", "FD002", "FD003", "FD004"]
    run, sites = _secure_run(tmp_path, monkeypatch, markets)
    publish_roster(run, 1, markets)
    opened = {m: mask_evaluation(sites[m], 1, _evaluation(i + 1)) for i, m in enumerate(markets)}
    opened["FD004"] = {**opened["FD004"], "train_rows": 1004}  # FD004's payload is refused: not masked-only
    for m, payload in opened.items():  # every envelope reached the centre
        run.exchange.put(run.exchange.metrics(1, m), seal_payload(sites[m], 1, "ab" * 32, payload, kind="metrics"))

    kind, vectors, refused = masked_vectors(opened, markets)
    assert sorted(vectors) == markets[:3] and "in clear" in refused["FD004"]
    assert delivered(run.exchange, 1, markets) == set(markets)
    summed, why = withhold_sum(markets, set(opened) | delivered(run.exchange, 1, markets), vectors, dict(refused))
    assert summed == {} and sorted(why) == markets  # no sum this round, every market told why
    assert "in clear" in why["FD004"] and all("['FD004']" in w and "unmask" in w for w in why.values())

    # whatever the caller, the centre cannot ask for the seeds: no survivors' list, so no market reveals
    with pytest.raises(secagg.SecAggError, match=r"seeds with \['FD004'\].*received their masked vectors"):
        publish_survivors(run, 1, markets[:3])
    assert not run.exchange.exists(_doc_path(run.exchange, 1, "survivors.json"))
    for m in markets[:3]:
        with pytest.raises(secagg.SecAggError, match="published no survivors.json"):
            reveal(sites[m], 1)
    with pytest.raises(secagg.SecAggError, match="received"):
        reveal_request(markets, markets[:3], {"FD004"})
    with pytest.raises(secagg.SecAggError, match=r"survivors \['FD009'\] are not in the roster"):
        reveal_request(markets, [*markets[:3], "FD009"], set())
    assert reveal_request(markets, markets[:3], set(markets[:3])) == ["FD004"]  # a real dropout: recoverable


def test_the_mask_reuse_guard_remembers_every_session(tmp_path, monkeypatch):
    """A superseded roster posted again (replayed) cannot make a market mask under masks it already used, nor
    reveal seeds for that old session; the same figures re-sent keep the survivors' list already revealed for."""
    from fedpipe import secagg
    from fedpipe.secure_round import (ROSTER_KIND, _doc_path, _own_record, _publish_signed, mask_evaluation,
                                      publish_roster, publish_survivors, reveal)

    markets = ["FD001", "FD002", "FD003", "FD004"]
    run, sites = _secure_run(tmp_path, monkeypatch, markets)
    path = _doc_path(run.exchange, 1, "roster.json")
    publish_roster(run, 1, markets)
    old = run.exchange.get(path), run.exchange.get(path + ".sig")
    first = mask_evaluation(sites["FD001"], 1, _evaluation(1))
    publish_roster(run, 1, markets)  # re-run: fresh session
    assert mask_evaluation(sites["FD001"], 1, _evaluation(1)) != first

    run.exchange.put(path, old[0])  # the first roster replayed, signature and all
    run.exchange.put(path + ".sig", old[1])
    for figures in (_evaluation(2), _evaluation(1)):  # other figures, or the same again: both refused
        with pytest.raises(secagg.SecAggError, match="masked under a newer roster since"):
            mask_evaluation(sites["FD001"], 1, figures)
    record = json.loads(_own_record(sites["FD001"], 1).read_text())
    assert len(record["sessions"]) == 2 and record["mask_label"] in record["sessions"]  # kept on disk, both
    publish_survivors(run, 1, markets[:3])
    with pytest.raises(secagg.SecAggError, match="roster changed since it masked"):
        reveal(sites["FD001"], 1)  # nor any seed of the old session

    publish_roster(run, 1, markets)  # a third session: every market masks, FD004 then drops
    for i, m in enumerate(markets):
        mask_evaluation(sites[m], 1, _evaluation(i + 1))
    publish_survivors(run, 1, markets[:3])
    assert set(reveal(sites["FD001"], 1)["seeds"]) == {"FD004"}
    mask_evaluation(sites["FD001"], 1, _evaluation(1))  # the same figures again: allowed, the reveal is remembered
    publish_survivors(run, 1, ["FD001", "FD002", "FD004"])
    with pytest.raises(secagg.SecAggError, match="already revealed"):
        reveal(sites["FD001"], 1)

    doc = json.loads(run.exchange.get(path))  # same session, roster changed: not the one FD002 masked with
    doc["markets"].pop("FD004")
    _publish_signed(run, 1, "roster.json", ROSTER_KIND, doc)
    with pytest.raises(secagg.SecAggError, match="is not the one it masked with"):
        reveal(sites["FD002"], 1)
    with pytest.raises(secagg.SecAggError, match="for another roster"):
        mask_evaluation(sites["FD002"], 1, _evaluation(2))
