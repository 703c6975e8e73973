"""fedpipe.tls and fedpipe.tls_enrolment: each market makes its own key; the centre signs authenticated CSRs."""

import datetime as dt
import ipaddress
import json
import socket
import ssl
import stat

import pytest
import tomli_w
import xgboost as xgb
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from fedpipe import keys, sealing, tls
from fedpipe import tls_enrolment as enrol
from fedpipe.config import load_federation
from fedpipe.errors import SealError
from fedpipe.market import MarketSite
from fedpipe.storage import Exchange
from fedpipe.tls import TlsError, create_federation_tls


def _cert(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


# --- fedpipe.tls -----------------------------------------------------------------------------------


def test_market_key_and_csr_stay_at_the_market_and_the_centre_signs_a_short_lived_client_cert(tmp_path):
    centre = tls.issue_server(tls.ensure_ca(tmp_path / "centre"))
    market = tls.MarketTls(tmp_path / "market" / "A")
    csr = tls.ensure_request(market, "A")
    assert _mode(market.key) == 0o600 and _mode(centre.ca_key) == _mode(centre.server_key) == 0o600
    assert not list((tmp_path / "centre").glob("*A*"))  # nothing of the market's at the centre

    ca_cert, ca_key = tls.load_ca(centre)
    cert = tls.sign_csr(ca_cert, ca_key, tls.load_csr(csr.public_bytes(serialization.Encoding.PEM), "A"), "A")
    client = tls.install_certificate(market, "A", cert.public_bytes(serialization.Encoding.PEM),
                                     centre.ca_cert.read_bytes())
    assert _cert(client.cert) == cert and client.ca.read_bytes() == centre.ca_cert.read_bytes()
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == \
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= tls.CLIENT_VALIDITY + dt.timedelta(minutes=5)
    san = _cert(centre.server_cert).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)


def test_sign_csr_refuses_another_common_name(tmp_path):
    ca_cert, ca_key = tls.issue_ca()
    csr = tls.build_csr(tls.generate_key(), "B")
    with pytest.raises(TlsError, match="market 'A': the CSR asks for common name 'B'"):
        tls.sign_csr(ca_cert, ca_key, csr, "A")


def test_a_certificate_from_another_ca_or_for_another_key_is_refused(tmp_path):
    ca_cert, ca_key = tls.issue_ca()
    other_ca, other_key = tls.issue_ca()
    key = tls.generate_key()
    foreign = tls.sign_csr(other_ca, other_key, tls.build_csr(key, "A"), "A")
    with pytest.raises(TlsError, match="not issued by the federation's current CA"):
        tls.check_client_certificate(foreign, key, ca_cert, "A")
    ours = tls.sign_csr(ca_cert, ca_key, tls.build_csr(key, "A"), "A")
    with pytest.raises(TlsError, match="does not match this market's key"):
        tls.check_client_certificate(ours, tls.generate_key(), ca_cert, "A")
    later = dt.datetime.now(dt.timezone.utc) + tls.CLIENT_VALIDITY
    with pytest.raises(TlsError, match="not usable now"):
        tls.check_client_certificate(ours, key, ca_cert, "A", now=later)


def test_create_federation_tls_for_tests_and_benchmarks_reuses_the_ca(tmp_path):
    first = create_federation_tls(tmp_path, ["A"])
    ca, client_a = first.ca_cert.read_bytes(), first.client("A").cert.read_bytes()
    second = create_federation_tls(tmp_path, ["A", "B"])
    assert second.ca_cert.read_bytes() == ca and second.client("A").cert.read_bytes() == client_a
    cert_b = _cert(second.client("B").cert)
    cert_b.verify_directly_issued_by(_cert(second.ca_cert))
    assert tls.common_name(cert_b.subject) == "B" and _mode(second.client("B").key) == 0o600


# --- the histogram strategy's gRPC server: mutual TLS ----------------------------------------------

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")  # + an empty SETTINGS frame


def _dial(port, files, client=None) -> bytes:
    """Open TLS to the federated server as a gRPC client would (ALPN h2), send the HTTP/2 preface, return the
    server's first bytes; b"" if it ends the connection (with TLS 1.3 the client learns that only after its side of
    the handshake)."""
    ctx = ssl.create_default_context(cafile=str(files.ca_cert))
    ctx.set_alpn_protocols(["h2"])
    if client is not None:
        ctx.load_cert_chain(str(client.cert), str(client.key))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
                conn.sendall(H2_PREFACE)
                return conn.recv(64)
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return b""


@pytest.mark.skipif(not xgb.build_info().get("USE_FEDERATED"), reason="xgboost without federated plugin")
def test_the_histogram_server_refuses_a_client_that_presents_no_certificate(tmp_path, capfd):
    from fedpipe.strategies import histogram

    files = create_federation_tls(tmp_path / "tls", ["A"])
    port = histogram.free_port()
    with histogram.federated_server(1, port, files, timeout_s=30):  # the real server process, as a round starts it
        refused = _dial(port, files)  # trusts the CA, but shows no certificate of its own
        control = _dial(port, files, files.client("A"))  # the same dial with A's CA-issued certificate
    assert refused == b""  # not one HTTP/2 byte: the connection was ended
    assert len(control) >= 9 and control[3] == 0x04  # an HTTP/2 SETTINGS frame: it does talk to a certified client
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in capfd.readouterr().err  # the server's own reason


# --- fedpipe.tls_enrolment: the round's exchange ----------------------------------------------------


@pytest.fixture
def fed(tmp_path):
    doc = {"federation": {"name": "f", "usecase": "predictive_maintenance", "quorum": 1,
                          "keys_dir": str(tmp_path / "keys")},
           "model": {"base_score": 0.5},  # bagging needs an agreed intercept (fedpipe.config)
           "markets": {m: {"data": f"data/{m}"} for m in ("A", "B")}}
    (tmp_path / "fed.toml").write_text(tomli_w.dumps(doc))
    federation = load_federation(tmp_path / "fed.toml")
    keys.ensure_identity(federation.keys_dir, "aggregator")
    exchange = Exchange(tmp_path / "exchange")
    centre = tls.issue_server(tls.ensure_ca(tmp_path / "centre-tls"))
    sites = {m: MarketSite(federation, m, exchange) for m in ("A", "B")}
    for site in sites.values():
        site.identity()
    return federation, exchange, centre, sites


def _request(site, round_):
    return enrol.request_certificate(site, round_, enrol.fetch_ca(site, round_))


def test_round_enrolment_issues_then_keeps_certificates(fed):
    federation, exchange, centre, sites = fed
    enrol.publish_ca(federation, exchange, 1, centre)
    assert [_request(s, 1) for s in sites.values()] == ["requested", "requested"]
    assert enrol.sign_requests(federation, exchange, 1, ["A", "B"], centre) == ({"A": "issued", "B": "issued"}, {})
    client = enrol.client_tls(sites["A"], 1)
    assert client.key == enrol.market_files(sites["A"]).key and _mode(client.key) == 0o600
    assert tls.common_name(_cert(client.cert).subject) == "A"
    assert not exchange.exists(exchange.tls(1, "A.key"))  # only the CSR and the certificate crossed
    # next round: a certificate still good is kept, no new key
    key_before = client.key.read_bytes()
    enrol.publish_ca(federation, exchange, 2, centre)
    assert _request(sites["A"], 2) == "kept"
    assert enrol.sign_requests(federation, exchange, 2, ["A"], centre) == ({"A": "kept"}, {})
    assert enrol.client_tls(sites["A"], 2).key.read_bytes() == key_before


def test_a_csr_in_another_markets_name_or_with_another_name_is_refused(fed):
    federation, exchange, centre, sites = fed
    enrol.publish_ca(federation, exchange, 1, centre)
    # B (or anyone who can write to the exchange) posts a CSR for its own key in A's slot, signed by B
    csr = tls.build_csr(tls.generate_key(), "A").public_bytes(serialization.Encoding.PEM)
    exchange.put(exchange.tls(1, "A.csr"), csr)
    exchange.put(exchange.tls(1, "A.csr.sig"), sealing.sign_model(csr, federation="f", round=1,
                                                                  signer=sites["B"].identity(), kind="tls-csr"))
    # B signs its own request, but asks for A's name
    wrong_cn = tls.build_csr(tls.generate_key(), "A").public_bytes(serialization.Encoding.PEM)
    exchange.put(exchange.tls(1, "B.csr"), wrong_cn)
    exchange.put(exchange.tls(1, "B.csr.sig"), sealing.sign_model(wrong_cn, federation="f", round=1,
                                                                  signer=sites["B"].identity(), kind="tls-csr"))
    ready, dropped = enrol.sign_requests(federation, exchange, 1, ["A", "B"], centre)
    assert ready == {}
    assert "model signed by 'B', expected 'A'" in dropped["A"]
    assert "the CSR asks for common name 'A', expected 'B'" in dropped["B"]
    assert not exchange.exists(exchange.tls(1, "A.pem")) and not exchange.exists(exchange.tls(1, "B.pem"))
    assert json.loads(exchange.get(exchange.dropped(1, "A")))["reason"] == dropped["A"]


def test_a_csr_signed_with_a_forged_identity_or_replayed_from_another_round_is_refused(fed, tmp_path):
    federation, exchange, centre, sites = fed
    enrol.publish_ca(federation, exchange, 2, centre)
    impostor = keys.generate_identity(tmp_path / "impostor", "A")  # named A, but not A's registered key
    csr = tls.build_csr(tls.generate_key(), "A").public_bytes(serialization.Encoding.PEM)
    exchange.put(exchange.tls(2, "A.csr"), csr)
    exchange.put(exchange.tls(2, "A.csr.sig"), sealing.sign_model(
        csr, federation="f", round=2, signer=keys.load_identity(tmp_path / "impostor", impostor.party),
        kind="tls-csr"))
    exchange.put(exchange.tls(2, "B.csr"), csr)
    exchange.put(exchange.tls(2, "B.csr.sig"), sealing.sign_model(csr, federation="f", round=1,
                                                                  signer=sites["B"].identity(), kind="tls-csr"))
    ready, dropped = enrol.sign_requests(federation, exchange, 2, ["A", "B"], centre)
    assert ready == {} and "invalid signature" in dropped["A"] and "round 1, expected 2" in dropped["B"]


def test_a_market_without_a_request_is_left_out_with_the_reason(fed):
    federation, exchange, centre, sites = fed
    enrol.publish_ca(federation, exchange, 1, centre)
    _request(sites["A"], 1)
    ready, dropped = enrol.sign_requests(federation, exchange, 1, ["A", "B"], centre)
    assert list(ready) == ["A"] and "market 'B': no TLS certificate request for round 1" in dropped["B"]


def test_a_market_refuses_a_ca_not_signed_by_the_aggregator(fed):
    federation, exchange, centre, sites = fed
    enrol.publish_ca(federation, exchange, 1, centre)
    other, _ = tls.issue_ca()
    exchange.put(exchange.tls(1, "ca.pem"), other.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(SealError, match="do not match the signed sha256"):
        enrol.fetch_ca(sites["A"], 1)


def test_a_market_refuses_an_issued_certificate_for_another_key(fed):
    federation, exchange, centre, sites = fed
    enrol.publish_ca(federation, exchange, 1, centre)
    _request(sites["A"], 1)
    ca_cert, ca_key = tls.load_ca(centre)
    swapped = tls.sign_csr(ca_cert, ca_key, tls.build_csr(tls.generate_key(), "A"), "A")
    exchange.put(exchange.tls(1, "A.pem"), swapped.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(TlsError, match="does not match this market's key"):
        enrol.client_tls(sites["A"], 1)


def test_the_rounds_record_says_why_a_market_was_left_out(fed, tmp_path):
    from fedpipe.central import Run, open_sealed

    federation, exchange, centre, sites = fed
    enrol.publish_ca(federation, exchange, 1, centre)
    _request(sites["A"], 1)
    _, dropped = enrol.sign_requests(federation, exchange, 1, ["A", "B"], centre)
    _, reasons = open_sealed(Run(federation, "r", tmp_path, exchange), 1, sealing.sha256_hex(b"genesis"),
                             "update")
    assert reasons["B"] == dropped["B"] and reasons["B"].startswith("refused TLS request: market 'B'")
