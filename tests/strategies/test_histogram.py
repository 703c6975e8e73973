"""Histogram strategy: XGBoost's federated collective over mutual TLS, against a pooled hist model."""

import multiprocessing
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from fedpipe.strategies import agreed_cuts, histogram
from fedpipe.tls import create_federation_tls

sys.path.insert(0, str(Path(__file__).parent))
import hist_workers  # noqa: E402

pytestmark = pytest.mark.skipif(not xgb.build_info().get("USE_FEDERATED"), reason="xgboost without federated plugin")


def _run(tls, markets, tmp_path, wait_s, cuts="agreed"):
    port = histogram.free_port()
    ctx = multiprocessing.get_context("spawn")
    with histogram.federated_server(len(markets), port, tls, timeout_s=30):
        workers = [ctx.Process(target=hist_workers.worker, args=(rank, len(markets), port, str(tls.folder), market,
                                                                str(tmp_path / f"{market}.json"), 20, cuts))
                   for rank, market in enumerate(markets)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(wait_s)
        codes = [w.exitcode for w in workers]
        for w in workers:
            if w.is_alive():
                w.kill()
                w.join()
    return codes


def _federated_model(tmp_path, markets) -> xgb.Booster:
    models = [(tmp_path / f"{m}.json").read_bytes() for m in markets]
    assert all(m == models[0] for m in models)  # every worker holds the same model
    booster = xgb.Booster()
    booster.load_model(bytearray(models[0]))
    return booster


def _pooled_rows(world):
    shards = [hist_workers.shard(r, world) for r in range(world)]
    return np.vstack([s[0] for s in shards]), np.concatenate([s[1] for s in shards])


def test_histogram_equals_pooled_model_with_the_agreed_cut_points(tmp_path):
    markets = ["A", "B", "C"]
    tls = create_federation_tls(tmp_path / "tls", markets)
    assert _run(tls, markets, tmp_path, wait_s=120) == [0, 0, 0]
    federated = _federated_model(tmp_path, markets)
    x, y = _pooled_rows(3)
    params = {**hist_workers.PARAMS, "tree_method": "hist"}
    pooled = xgb.train(params, agreed_cuts.binned_matrix(x, y, params["max_bin"]), 4)
    # the very same trees: identical predictions, to the bit
    np.testing.assert_array_equal(federated.predict(xgb.DMatrix(x)), pooled.predict(xgb.DMatrix(x)))
    # and XGBoost's own sketch of the pooled rows (16 bins, far fewer than distinct values) gives another model
    sketched = xgb.train(params, xgb.DMatrix(x, label=y), 4)
    assert not np.array_equal(federated.predict(xgb.DMatrix(x)), sketched.predict(xgb.DMatrix(x)))


def test_sketch_cuts_still_train_one_model(tmp_path):
    tls = create_federation_tls(tmp_path / "tls", ["A", "B"])
    assert _run(tls, ["A", "B"], tmp_path, wait_s=120, cuts="sketch") == [0, 0]
    federated = _federated_model(tmp_path, ["A", "B"])
    x, _ = _pooled_rows(2)
    assert federated.num_boosted_rounds() == 4 and np.isfinite(federated.predict(xgb.DMatrix(x))).all()


def test_mtls_refuses_a_client_certificate_from_another_ca(tmp_path, capfd):
    tls = create_federation_tls(tmp_path / "tls", ["A"])
    other = create_federation_tls(tmp_path / "other-ca", ["B"])
    shutil.copy(other.client("B").cert, tls.client("B").cert)  # B's certificate, signed by a foreign CA
    shutil.copy(other.client("B").key, tls.client("B").key)
    codes = _run(tls, ["A", "B"], tmp_path, wait_s=15)
    assert 0 not in codes  # nobody trains with an impostor
    assert not (tmp_path / "B.json").exists() and not (tmp_path / "A.json").exists()
    assert "CERTIFICATE_VERIFY_FAILED" in capfd.readouterr().err


def test_missing_plugin_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(xgb, "build_info", lambda: {"USE_FEDERATED": False})  # fault injection only
    with pytest.raises(histogram.FederatedUnavailable, match="federated plugin"):
        histogram.require_federated_plugin()
