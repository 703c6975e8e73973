"""Secure aggregation in real rounds: the centre gets the same federation totals as plain aggregation, sees no
market's figures in clear, and recovers from a market that drops after masking."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tomli_w

import flows.market
from fedpipe import secagg
from fedpipe.central import Run, open_sealed
from fedpipe.config import load_federation
from fedpipe.federation_metrics import federation_metrics
from fedpipe.secure_round import MODELS, VALUE_KEYS, flatten
from fedpipe.storage import Exchange
from flows.round import federated_training

MARKETS = ("FD001", "FD002", "FD003", "FD004")
TOL = 1e-3  # fixed point has 2^-16 resolution per value; four markets' rounding stays far below this


def _variant(config: Path, name: str, **federation) -> Path:
    doc = tomllib.loads(config.read_text())
    doc["federation"].update(federation)
    path = config.with_name(f"{name}.toml")
    path.write_bytes(tomli_w.dumps(doc).encode())
    return path


def _opened_metrics(config: Path, run_dir: Path) -> dict[str, dict]:
    """What the aggregator reads when it decrypts the round's sealed metrics."""
    fed = load_federation(config)
    record = json.loads((run_dir / "rounds.json").read_text())[0]
    run = Run(fed, run_dir.name, run_dir, Exchange(run_dir / "exchange"))
    opened, _ = open_sealed(run, 1, record["model_sha256"], "metrics")
    return opened


def _own_figures(folders: dict[str, Path], market: str) -> dict:
    """A market's own per-market figures, kept in its state folder (never sent in clear)."""
    state = folders[market].parent / "state" / "test-fed" / "secure-aggregation" / "round-001.json"
    return json.loads(state.read_text())["evaluation"]


def _federation_rows(run_dir: Path) -> tuple[pd.DataFrame, pd.Series]:
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    roi = pd.read_parquet(run_dir / "roi.parquet")
    return metrics[metrics["market"] == "federation"].set_index("model"), roi.set_index("market").loc["federation"]


def _expected(evaluations: list[dict]) -> tuple[dict, dict]:
    """Plain (unmasked) totals of the given per-market evaluations: metrics per model, ROI figures."""
    metrics = {model: federation_metrics([ev[model]["stats"] for ev in evaluations]) for model in MODELS}
    roi = {k: sum(ev["federated"]["value"][k] for ev in evaluations) for k in VALUE_KEYS}
    roi["savings_local_only"] = sum(ev["local_only"]["value"]["savings"] for ev in evaluations)
    return metrics, roi


def _assert_rows_match(run_dir: Path, metrics: dict, roi: dict) -> None:
    fed_metrics, fed_roi = _federation_rows(run_dir)
    for model in MODELS:
        for key in ("auc", "precision", "recall", "log_loss", "rows"):
            assert fed_metrics.loc[model, key] == pytest.approx(metrics[model][key], abs=TOL), (model, key)
    for key, value in roi.items():
        assert fed_roi[key] == pytest.approx(value, abs=TOL), key


def test_secure_totals_equal_plain_totals_and_nothing_leaves_in_clear(federation):
    config, folders = federation(markets=MARKETS, rounds=1, trees=2, quorum=3, subsample=0.2)
    plain = Path(federated_training(config=str(config), run_id="plain"))
    secure_config = _variant(config, "secure", secure_aggregation=True)
    secure = Path(federated_training(config=str(secure_config), run_id="secure"))

    # the plain run: the aggregator sees each market's figures, and sums them itself
    plain_opened = _opened_metrics(config, plain)
    assert sorted(plain_opened) == list(MARKETS)
    plain_metrics, plain_roi = _expected(list(plain_opened.values()))
    _, plain_fed_roi = _federation_rows(plain)
    for key in VALUE_KEYS:
        assert plain_fed_roi[key] == pytest.approx(plain_roi[key])

    # the secure run: same totals, within fixed-point tolerance
    _assert_rows_match(secure, plain_metrics, plain_roi)
    metrics = pd.read_parquet(secure / "metrics.parquet")
    roi = pd.read_parquet(secure / "roi.parquet")
    assert set(metrics["market"]) == {"federation"} and set(roi["market"]) == {"federation"}  # no per-market rows

    # what the aggregator decrypts holds a masked vector only: no figure in clear
    secure_opened = _opened_metrics(secure_config, secure)
    assert sorted(secure_opened) == list(MARKETS)
    for market, payload in secure_opened.items():
        assert set(payload) == {"market", "secagg"}
        assert set(payload["secagg"]) == {"kind", "label", "size", "masked"}
        masked = secagg.from_wire(payload["secagg"]["masked"])
        _, own = flatten(_own_figures(folders, market))
        assert masked.size == own.size
        assert np.mean(masked == secagg.encode(own)) < 0.01  # random-looking, not the market's encoded figures
        assert own == pytest.approx(flatten(plain_opened[market])[1])  # same run, same figures kept locally


def test_a_market_that_drops_after_masking_is_recovered_from_reveals(federation, monkeypatch):
    config, folders = federation(markets=MARKETS, rounds=1, trees=2, quorum=3, subsample=0.2,
                                 secure_aggregation=True)
    real_publish = flows.market.publish

    def drop_fd004_metrics(site, path, envelope):  # fault injection: FD004's link dies after it masked
        if site.market == "FD004" and "/metrics/" in path:
            raise ConnectionError("injected fault: FD004 lost its link after masking")
        return real_publish(site, path, envelope)

    monkeypatch.setattr(flows.market, "publish", drop_fd004_metrics)
    run_dir = Path(federated_training(config=str(config), run_id="dropout"))

    assert _own_figures(folders, "FD004")  # FD004 did mask (its record exists) before it dropped
    exchange = run_dir / "exchange" / "round-001"
    assert not (exchange / "metrics" / "FD004.sealed").exists()
    assert json.loads((exchange / "secagg" / "survivors.json").read_text())["survivors"] == ["FD001", "FD002", "FD003"]
    assert sorted(p.name for p in (exchange / "secagg").glob("reveal-*.sealed")) == [
        "reveal-FD001.sealed", "reveal-FD002.sealed", "reveal-FD003.sealed"]

    survivors = [_own_figures(folders, m) for m in ("FD001", "FD002", "FD003")]
    metrics, roi = _expected(survivors)
    _assert_rows_match(run_dir, metrics, roi)  # the survivors' plain sum, FD004's masks removed
