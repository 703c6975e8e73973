"""Tasks of the histogram strategy: the centre's federated server and TLS files, and a market's training step."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from fedpipe.strategies import histogram as h
from fedpipe.tls import FederationTls, create_federation_tls


@task(cache_policy=NO_CACHE)
def prepare_tls(federation, markets: list[str], host: str) -> FederationTls:
    """The federation's CA, the server certificate for ``host`` and one client certificate per market."""
    return create_federation_tls(federation.keys_dir / "tls" / federation.name, markets, server_host=host)


@task(cache_policy=NO_CACHE)
def start_federated_server(n_workers: int, tls: FederationTls, timeout_s: float):
    """Start XGBoost's federated gRPC server (mutual TLS); returns (server process, port)."""
    port = h.free_port()
    return h.start_server(n_workers, port, tls, int(timeout_s)), port


@task(cache_policy=NO_CACHE)
def stop_federated_server(server) -> int | None:
    return h.stop_server(server)


@task(cache_policy=NO_CACHE)
def train_histogram_update(site, data, global_doc, communicator: dict):
    """Join the round's collective from inside the market; the k new trees come back as a TreeUpdate."""
    return h.train_market_update(site, data, global_doc, communicator)
