"""Tasks of the histogram strategy: the centre's federated server and CA, and a market's TLS and training steps."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from fedpipe import tls_enrolment as enrol
from fedpipe.storage import Exchange
from fedpipe.strategies import histogram as h
from fedpipe.tls import ClientTls, FederationTls, ensure_ca, issue_server


@task(cache_policy=NO_CACHE)
def prepare_tls(federation, exchange: str, round_: int, host: str) -> FederationTls:
    """The federation's CA (kept while valid) and a server certificate for ``host``, both centre-side; the CA
    certificate goes to the exchange, signed, for the markets."""
    files = issue_server(ensure_ca(federation.keys_dir / "tls" / federation.name), host)
    enrol.publish_ca(federation, Exchange(exchange), round_, files)
    return files


@task(cache_policy=NO_CACHE)
def sign_tls_requests(federation, exchange: str, round_: int, markets: list[str], tls: FederationTls) -> list[str]:
    """Check every market's signed TLS request and issue its certificate; returns the markets that may dial."""
    ready, dropped = enrol.sign_requests(federation, Exchange(exchange), round_, markets, tls)
    for market, reason in dropped.items():  # also in the round's record, through the centre's drop note
        get_run_logger().warning("%s: left out of round %d: %s", market, round_, reason)
    return [m for m in markets if m in ready]


@task(cache_policy=NO_CACHE)
def start_federated_server(n_workers: int, tls: FederationTls, timeout_s: float):
    """Start XGBoost's federated gRPC server (mutual TLS); returns (server process, port)."""
    port = h.free_port()
    return h.start_server(n_workers, port, tls, int(timeout_s)), port


@task(cache_policy=NO_CACHE)
def stop_federated_server(server) -> int | None:
    return h.stop_server(server)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])  # exchange I/O can be remote
def fetch_tls_ca(site, round_: int) -> bytes:
    return enrol.fetch_ca(site, round_)


@task(cache_policy=NO_CACHE)
def request_tls_certificate(site, round_: int, ca_pem: bytes) -> str:
    """Keep this market's TLS key and certificate, or make a new key here and post a signed CSR."""
    return enrol.request_certificate(site, round_, ca_pem)


@task(cache_policy=NO_CACHE)
def load_client_tls(site, round_: int) -> ClientTls:
    """The market's own key, its issued certificate and the CA, checked before dialling."""
    return enrol.client_tls(site, round_)


@task(cache_policy=NO_CACHE)
def train_histogram_update(site, data, global_doc, communicator: dict):
    """Join the round's collective from inside the market; the k new trees come back as a TreeUpdate."""
    return h.train_market_update(site, data, global_doc, communicator)
