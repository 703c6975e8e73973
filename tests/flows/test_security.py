"""Trust at the border, on a real run: what the exchange holds, and a revoked market refused by the round flow."""

from __future__ import annotations

import json
import tomllib
import zlib
from pathlib import Path

import pandas as pd
import pytest
import tomli_w

from fedpipe.keys import load_public_identity
from fedpipe.sealing import describe, verify_model
from flows.round import federated_training

ROUNDS = 2
DATA = Path(__file__).resolve().parents[2] / "usecases" / "predictive_maintenance" / "data"


@pytest.fixture(scope="module")
def secured_run(tmp_path_factory):
    """4 markets, FD004 revoked in the federation file: the round goes on with the other three (quorum 3)."""
    tmp = tmp_path_factory.mktemp("secured")
    markets = {}
    for name in ("FD001", "FD002", "FD003", "FD004"):
        folder = tmp / "markets" / name
        folder.mkdir(parents=True)
        for table in ("train", "test"):  # a fifth of the rows keeps the run short; raw values stay real
            frame = pd.read_parquet(DATA / name / f"{table}.parquet")
            frame[frame["unit"] % 5 == 1].to_parquet(folder / f"{table}.parquet", index=False)
        markets[name] = {"data": str(folder), "state": str(tmp / "state" / name)}
    markets["FD004"]["revoked"] = True
    doc = {"federation": {"name": "sec-fed", "usecase": "predictive_maintenance", "rounds": ROUNDS,
                          "trees_per_round": 2, "quorum": 3, "runs_dir": str(tmp / "runs"),
                          "keys_dir": str(tmp / "keys")},
           "model": {"max_depth": 3, "eta": 0.3, "base_score": 0.5}, "markets": markets}
    config = tmp / "federation.toml"
    config.write_text(tomli_w.dumps(doc))
    run_dir = Path(federated_training(config=str(config)))
    return tmp, tomllib.loads(config.read_text()), run_dir


def _raw_values(folder, n=200) -> set[bytes]:
    """Distinctive cell values of a market's tables, as JSON would spell them."""
    values = set()
    for table in ("train", "test"):
        frame = pd.read_parquet(folder / f"{table}.parquet").drop(columns=["unit", "cycle"])
        for v in frame.sample(n, random_state=0).to_numpy().ravel():
            text = json.dumps(float(v))
            if len(text.replace(".", "").lstrip("-")) >= 5:  # short numbers (100.0, 1.3) would match by chance
                values.add(text.encode())
    return values


def test_revoked_market_is_refused_and_the_round_goes_on(secured_run):
    _, _, run_dir = secured_run
    rounds = json.loads((run_dir / "rounds.json").read_text())
    assert len(rounds) == ROUNDS
    for record in rounds:
        assert sorted(record["contributors"]) == ["FD001", "FD002", "FD003"]
        assert "revoked market 'FD004'" in record["dropped"]["FD004"]


def test_exchange_holds_no_plaintext_model_and_no_rows(secured_run):
    tmp, doc, run_dir = secured_run
    exchange = run_dir / "exchange"
    files = [p for p in exchange.rglob("*") if p.is_file()]
    columns = pd.read_parquet(tmp / "markets" / "FD001" / "train.parquet").columns
    raw = set().union(*(_raw_values(tmp / "markets" / m) for m in doc["markets"]))
    assert len(raw) > 500
    # "auc" with its JSON quotes: three bare bytes turn up in megabytes of ciphertext by chance
    model_words = [b"split_conditions", b"base_weights", b"left_children", b"learner", b"savings", b'"auc"']
    sealed = [p for p in files if p.suffix == ".sealed"]
    # every market's update (FD004's too: sealed, then refused) and the three contributors' metrics
    assert len(sealed) == ROUNDS * (4 + 3)
    for path in sealed:
        blob = path.read_bytes()
        header = describe(blob)  # the only clear text: the documented header
        assert set(header) == {"format", "kind", "federation", "round", "market", "parent", "created", "nbytes"}
        hlen = int.from_bytes(blob[8:12], "big")
        ciphertext = blob[16 + hlen:-64]
        assert len(zlib.compress(ciphertext, 9)) > 0.99 * len(ciphertext)  # random-looking: nothing in clear
        for word in model_words + [c.encode() for c in columns]:
            assert word not in blob, (path, word)
        assert not [v for v in raw if v in blob], path
    for path in exchange.rglob("status/*.json"):  # status notes: a few words for the centre, never rows
        text = path.read_bytes()
        assert not [v for v in raw if v in text], path
        assert str(tmp / "markets").encode() not in text  # nor where the data lives
        assert b"split_conditions" not in text
    aggregator = load_public_identity(tmp / "keys", "aggregator")
    for round_ in range(1, ROUNDS + 1):  # global models are public by design, but signed by the aggregator
        model = exchange / "global" / f"round-{round_:03d}.json"
        verify_model(model.read_bytes(), model.with_suffix(".json.sig").read_bytes(), federation="sec-fed",
                     round=round_, signer=aggregator)
    for path in files:  # nothing else crossed the border
        where = path.relative_to(exchange).parts
        assert where[0] == "global" or (where[0].startswith("round-") and where[1] in {"updates", "metrics", "status"}), where
