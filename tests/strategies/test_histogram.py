"""Histogram strategy: XGBoost's federated collective over mutual TLS, against a pooled hist model."""

import multiprocessing
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from fedpipe.strategies import histogram
from fedpipe.tls import create_federation_tls

sys.path.insert(0, str(Path(__file__).parent))
import hist_workers  # noqa: E402

pytestmark = pytest.mark.skipif(not xgb.build_info().get("USE_FEDERATED"), reason="xgboost without federated plugin")


def _run(tls, markets, tmp_path, wait_s):
    port = histogram.free_port()
    ctx = multiprocessing.get_context("spawn")
    with histogram.federated_server(len(markets), port, tls, timeout_s=30):
        workers = [ctx.Process(target=hist_workers.worker, args=(rank, len(markets), port, str(tls.folder), market,
                                                                str(tmp_path / f"{market}.json"), 20))
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


def test_histogram_equals_pooled_hist_model(tmp_path):
    tls = create_federation_tls(tmp_path / "tls", ["A", "B"])
    assert _run(tls, ["A", "B"], tmp_path, wait_s=120) == [0, 0]
    models = [(tmp_path / f"{m}.json").read_bytes() for m in ("A", "B")]
    assert models[0] == models[1]  # every worker holds the same model
    federated = xgb.Booster()
    federated.load_model(bytearray(models[0]))
    shards = [hist_workers.shard(r) for r in (0, 1)]
    x, y = np.vstack([s[0] for s in shards]), np.concatenate([s[1] for s in shards])
    pooled = xgb.train({**hist_workers.PARAMS, "tree_method": "hist"}, xgb.DMatrix(x, label=y), 4)
    # Fewer distinct values than bins: the merged quantile sketch is exact, so are the trees.
    np.testing.assert_allclose(federated.predict(xgb.DMatrix(x)), pooled.predict(xgb.DMatrix(x)), rtol=1e-6)


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
