"""Exact histogram-based federated XGBoost, through XGBoost's own federated collective (gRPC, mutual TLS).

The centre runs XGBoost's federated server (:func:`federated_server`); every market joins as one worker
(:func:`train_worker`) and trains on its own rows. The markets first agree on exact quantile cut points from summed
counts (fedpipe.strategies.agreed_cuts); then each boosting step all-reduces the gradient histograms, never rows, so
every worker grows the same trees a pooled ``tree_method="hist"`` model with those cut points would.

Every worker must run in its own process: XGBoost's communicator is process-global. The server and the clients
trust only the federation's CA (fedpipe.tls); a client whose certificate another CA signed fails the handshake.
Each market makes its own TLS key; the centre only signs its request (fedpipe.tls_enrolment).

Note: XGBoost's server listens on all interfaces (``0.0.0.0:<port>``, fixed inside libxgboost); markets dial the
configured host, loopback by default, and mutual TLS refuses any client without a certificate from the CA.
"""

from __future__ import annotations

import multiprocessing
import socket
import time
from contextlib import contextmanager
from typing import Any, Iterator

import xgboost as xgb

from fedpipe.errors import FederatedUnavailable
from fedpipe.strategies import agreed_cuts
from fedpipe.tls import ClientTls, FederationTls


def require_federated_plugin() -> None:
    if not xgb.build_info().get("USE_FEDERATED"):
        raise FederatedUnavailable(
            f"the 'histogram' strategy needs xgboost built with the federated plugin, but xgboost "
            f"{xgb.__version__} reports USE_FEDERATED=False (the PyPI wheels for Linux x86_64/aarch64 up to 3.3 "
            f"include it; 3.4 dropped it). Install 'xgboost>=3.1,<3.4' or choose another strategy."
        )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _serve(n_workers: int, port: int, tls: FederationTls, timeout_s: int) -> None:
    from xgboost.federated import run_federated_server

    run_federated_server(n_workers=n_workers, port=port, server_key_path=str(tls.server_key),
                         server_cert_path=str(tls.server_cert),
                         client_cert_path=str(tls.ca_cert),  # clients must present a CA-signed certificate
                         blocking=True, timeout=int(timeout_s))


def _wait_listening(port: int, server, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if not server.is_alive():
            raise RuntimeError(f"the federated server exited with code {server.exitcode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"the federated server did not listen on port {port} within {deadline_s:.0f} s")


def start_server(n_workers: int, port: int, tls: FederationTls, timeout_s: int = 300):
    """Start XGBoost's federated server (mutual TLS) in its own process; returns the process once it listens.

    Its own process because the server, like the workers' communicator, is process-global state in libxgboost.
    """
    require_federated_plugin()
    server = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(n_workers, port, tls, timeout_s), name=f"xgboost-federated-server:{port}", daemon=True)
    server.start()
    try:
        _wait_listening(port, server, deadline_s=60)
    except Exception:
        stop_server(server)
        raise
    return server


def stop_server(server, grace_s: float = 5) -> int | None:
    """Stop the server process (it ends by itself once every worker has shut down); returns its exit code."""
    server.join(timeout=grace_s)
    if server.is_alive():
        server.terminate()
        server.join(timeout=grace_s)
    return server.exitcode


@contextmanager
def federated_server(n_workers: int, port: int, tls: FederationTls, timeout_s: int = 300) -> Iterator[None]:
    """Run the federated server while the block runs; stop it afterwards."""
    server = start_server(n_workers, port, tls, timeout_s)
    try:
        yield
    finally:
        stop_server(server)


def communicator_args(address: str, world_size: int, rank: int, tls: ClientTls | FederationTls,
                      market: str | None = None) -> dict[str, Any]:
    """What a market's worker passes to ``xgb.collective.CommunicatorContext``.

    ``tls`` is the market's own key, certificate and CA (fedpipe.tls_enrolment.client_tls), or, in tests and
    benchmarks that play every market, a create_federation_tls folder and the market's name.
    """
    client = tls.client(market) if isinstance(tls, FederationTls) else tls
    return {
        "dmlc_communicator": "federated", "federated_server_address": address,
        "federated_world_size": world_size, "federated_rank": rank,
        "federated_server_cert_path": str(client.ca),  # the server must present a certificate from the CA
        "federated_client_key_path": str(client.key), "federated_client_cert_path": str(client.cert),
    }


def train_worker(params: dict, x, label, num_boost_round: int, communicator: dict[str, Any],
                 xgb_model: xgb.Booster | None = None, cuts: str = "agreed") -> xgb.Booster:
    """Join the collective as one worker and boost ``num_boost_round`` trees on ``x`` (a DataFrame or array) with
    the other markets.

    ``cuts="agreed"``: the markets first agree on exact quantile cut points (fedpipe.strategies.agreed_cuts), so
    the trees are those of one pooled hist model with those cut points, whatever the markets' row orders.
    ``cuts="sketch"``: XGBoost's own merged quantile sketch (kept for the quality benchmark's comparison).
    """
    require_federated_plugin()
    if cuts not in ("agreed", "sketch"):
        raise ValueError(f"cuts must be 'agreed' or 'sketch', got {cuts!r}")
    bins = params.get("max_bin", 256)
    with xgb.collective.CommunicatorContext(**communicator):
        if cuts == "agreed":
            dtrain = agreed_cuts.binned_matrix(x, label, bins, agreed_cuts.collective_total)
        else:
            dtrain = xgb.DMatrix(x, label=label)
        return xgb.train({**params, "tree_method": "hist"}, dtrain, num_boost_round=num_boost_round,
                         xgb_model=xgb_model)


def train_market_update(site, data, global_doc: dict | None, communicator: dict[str, Any]):
    """Inside a market: join the round's collective and return the k new trees (a fedpipe TreeUpdate).

    The trees are the federation's (every worker grows the same ones); per-node statistics are masked as in
    bagging before they leave.
    """
    from fedpipe.aggregation import TreeUpdate, iteration_count, new_trees, to_booster
    from fedpipe.market import _params

    options = site.options()
    features, label = site.usecase.features(data.train, options), site.usecase.target(data.train, options)
    start = to_booster(global_doc) if global_doc is not None else None
    booster = train_worker(_params(site), features, label, site.federation.trees_per_round, communicator,
                           xgb_model=start)
    start_iteration = iteration_count(global_doc) if global_doc else 0
    return TreeUpdate(site.market, new_trees(booster, start_iteration), len(features))


def aggregate_histogram(global_doc: dict | None, updates: list) -> dict:
    """Append the round's trees once, at weight 1, after checking every market sent the very same trees."""
    from fedpipe.strategies.cyclic import append_trees

    if not updates:
        raise ValueError("no updates to aggregate")
    updates = sorted(updates, key=lambda u: u.market)
    trees = [u.model["learner"]["gradient_booster"]["model"]["trees"] for u in updates]
    for update, theirs in zip(updates[1:], trees[1:]):
        if theirs != trees[0]:
            raise ValueError(f"market '{update.market}': histogram trees differ from market "
                             f"'{updates[0].market}''s; the collective did not produce one model")
    return append_trees(global_doc, updates[0])
