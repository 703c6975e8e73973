"""How a market gets its TLS client certificate for a histogram round, authenticated end to end.

1. The centre publishes the round's CA certificate, signed with the aggregator's Ed25519 key
   (``round-NNN/tls/ca.pem`` + ``.sig``, kind "tls-ca"): :func:`publish_ca`.
2. Each market checks that signature, then either keeps its key and certificate (still valid, issued by this CA,
   for its key) or makes a new key (mode 0600, in its own keys folder) and a CSR. It publishes the CSR
   (``<market>.csr``, kind "tls-csr") or the certificate it keeps (``<market>.held.pem``, kind "tls-cert"),
   signed with its own Ed25519 identity for this federation and round: :func:`request_certificate`.
3. The centre checks the signature against the market's registered keys (fedpipe.trust), the CSR's common name,
   and signs a short-lived client certificate (``<market>.pem``): :func:`sign_requests`. Someone who can only
   write to the exchange cannot get a certificate in a market's name; a market left out is told why.
4. Before dialling, the market checks the issued certificate matches its key and chains to the CA:
   :func:`client_tls`.

Signatures are fedpipe.sealing's detached signature documents (``sign_model``/``verify_model``).
"""

from __future__ import annotations

import json
import logging

from cryptography.hazmat.primitives import serialization

from fedpipe import keys, sealing, tls, trust
from fedpipe.errors import SealError
from fedpipe.storage import Exchange

log = logging.getLogger(__name__)

CA = "ca.pem"


def market_files(site) -> tls.MarketTls:
    """A market's TLS files: in its own keys folder (the agent's site file says where), per federation."""
    return tls.MarketTls(site.keys_dir / "tls" / site.federation.name / site.market)


def _pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


# --- centre ----------------------------------------------------------------------------------------


def publish_ca(federation, exchange: Exchange, round_: int, files: tls.FederationTls) -> None:
    """Post the CA certificate for this round, signed by the aggregator, so markets know whom to trust."""
    pem = files.ca_cert.read_bytes()
    aggregator = keys.load_identity(federation.keys_dir, "aggregator")
    exchange.put(exchange.tls(round_, CA), pem)
    exchange.put(exchange.tls(round_, CA) + ".sig",
                 sealing.sign_model(pem, federation=federation.name, round=round_, signer=aggregator, kind="tls-ca"))


def _signed(exchange: Exchange, path: str, federation, round_: int, market: str, kind: str) -> bytes:
    """The blob at ``path`` if ``market``'s registered identity signed it for this federation and round."""
    data = exchange.get(path)
    sealing.verify_model(data, exchange.get(path + ".sig"), federation=federation.name, round=round_,
                         signer=trust.trusted_keys(federation, market), kind=kind)
    return data


def _missing_reason(exchange: Exchange, round_: int, market: str) -> str:
    status = exchange.status(round_, market)
    try:
        reason = json.loads(exchange.get(status)).get("reason") if exchange.exists(status) else None
    except (ValueError, AttributeError):
        reason = None
    return f"market '{market}': no TLS certificate request for round {round_}" + (f" ({reason})" if reason else "")


def check_request(federation, exchange: Exchange, round_: int, market: str, ca_cert, ca_key) -> str:
    """Check one market's request; issue its certificate if it asked for one. Returns "issued" or "kept"."""
    if market in trust.revoked_markets(federation):
        raise tls.TlsError(f"market '{market}' is revoked: no TLS certificate")
    csr_path, held_path = exchange.tls(round_, f"{market}.csr"), exchange.tls(round_, f"{market}.held.pem")
    if exchange.exists(csr_path):
        csr = tls.load_csr(_signed(exchange, csr_path, federation, round_, market, "tls-csr"), market)
        exchange.put(exchange.tls(round_, f"{market}.pem"), _pem(tls.sign_csr(ca_cert, ca_key, csr, market)))
        return "issued"
    if exchange.exists(held_path):
        pem = _signed(exchange, held_path, federation, round_, market, "tls-cert")
        tls.check_client_certificate(tls.load_certificate(pem, f"market '{market}'"), None, ca_cert, market)
        return "kept"
    raise tls.TlsError(_missing_reason(exchange, round_, market))


def sign_requests(federation, exchange: Exchange, round_: int, markets: list[str],
                  files: tls.FederationTls) -> tuple[dict[str, str], dict[str, str]]:
    """Every market's request checked (and signed): (outcome by ready market, reason by market left out).

    A market left out gets the centre's drop note for the round, so the round's record says why.
    """
    ca_cert, ca_key = tls.load_ca(files)
    ready, dropped = {}, {}
    for market in markets:
        try:
            ready[market] = check_request(federation, exchange, round_, market, ca_cert, ca_key)
        except (tls.TlsError, SealError, keys.KeyFileError, OSError) as exc:
            dropped[market] = f"refused TLS request: {exc}"
            log.warning("round %d: %s", round_, dropped[market])
            note = {"market": market, "round": round_, "status": "dropped", "reason": dropped[market]}
            exchange.put(exchange.dropped(round_, market), json.dumps(note).encode())
    return ready, dropped


# --- market ----------------------------------------------------------------------------------------


def fetch_ca(site, round_: int) -> bytes:
    """The round's CA certificate, checked against the aggregator's signature."""
    path = site.exchange.tls(round_, CA)
    pem = site.exchange.get(path)
    sealing.verify_model(pem, site.exchange.get(path + ".sig"), federation=site.federation.name, round=round_,
                         signer=trust.aggregator_keys(site.federation, keys_dir=site.keys_dir), kind="tls-ca")
    return pem


def request_certificate(site, round_: int, ca_pem: bytes) -> str:
    """Keep a still-good key and certificate, or make a new key and CSR; post either, signed. Returns which."""
    files = market_files(site)
    ca_cert = tls.load_certificate(ca_pem, f"market '{site.market}': the federation's CA certificate")
    held = tls.current_certificate(files, site.market, ca_cert)
    if held is not None:
        name, other, kind, pem = f"{site.market}.held.pem", f"{site.market}.csr", "tls-cert", _pem(held)
    else:
        csr = tls.ensure_request(files, site.market)
        name, other, kind = f"{site.market}.csr", f"{site.market}.held.pem", "tls-csr"
        pem = csr.public_bytes(serialization.Encoding.PEM)
    signature = sealing.sign_model(pem, federation=site.federation.name, round=round_, signer=site.identity(),
                                   kind=kind)
    exchange = site.exchange
    exchange.remove(exchange.tls(round_, other))  # one request per market and round
    exchange.put(exchange.tls(round_, name), pem)
    exchange.put(exchange.tls(round_, name) + ".sig", signature)
    return "kept" if held is not None else "requested"


def client_tls(site, round_: int) -> tls.ClientTls:
    """The key, certificate and CA a market's worker dials with, all checked; a newly issued certificate is
    installed next to the key first."""
    files = market_files(site)
    ca_pem = fetch_ca(site, round_)
    issued = site.exchange.tls(round_, f"{site.market}.pem")
    if site.exchange.exists(issued):
        return tls.install_certificate(files, site.market, site.exchange.get(issued), ca_pem)
    if not files.cert.exists():
        raise tls.TlsError(f"market '{site.market}': no TLS certificate issued for round {round_} and none kept "
                           f"in {files.folder}")
    return tls.install_certificate(files, site.market, files.cert.read_bytes(), ca_pem)
