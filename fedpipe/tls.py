"""Mutual TLS between the centre's gRPC server and the markets: a small CA that signs what markets ask for.

Who holds what:

- the centre (the federation's council) keeps the CA key and the server's key (:class:`FederationTls`); it
  signs a server certificate for the address markets dial, and one client certificate per market *request*;
- each market generates its own ECDSA key in its own keys folder and sends only a certificate signing request
  (CSR, common name = the market's name) (:class:`MarketTls`, :func:`ensure_request`). Its private key never
  leaves it; the centre checks the CSR (:func:`sign_csr`) and returns a short-lived client certificate.

Every party trusts only the federation's CA, so a client presenting a certificate from any other CA is refused
during the TLS handshake. How a request reaches the centre authenticated is fedpipe.tls_enrolment's business.

API::

    centre = ensure_ca(folder); issue_server(centre, "127.0.0.1")      # CA kept if valid; a new server cert
    market = MarketTls(folder); csr = ensure_request(market, "FD001")  # key 0600 at the market, CSR out
    cert = sign_csr(ca_cert, ca_key, csr, "FD001")                     # at the centre
    check_client_certificate(cert, key, ca_cert, "FD001")              # at the market, before dialling

``create_federation_tls`` plays every party at once, for tests and benchmarks only. Private keys are ECDSA P-256,
written PEM-encoded with mode 0600 through an atomic replace.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedpipe.errors import FedpipeError

CA_VALIDITY = dt.timedelta(days=365)
SERVER_VALIDITY = dt.timedelta(days=30)  # re-issued at every histogram round anyway
CLIENT_VALIDITY = dt.timedelta(days=7)  # short: a market's certificate is renewed as it nears its end
RENEW_WITHIN = dt.timedelta(days=2)  # a market asks for a new certificate once its own expires within this


class TlsError(FedpipeError):
    """A TLS key, request or certificate was refused; the message names the market and the check."""


@dataclass(frozen=True)
class ClientTls:
    """What a market's worker dials with: its certificate and key, and the CA certificate it trusts."""

    cert: Path
    key: Path
    ca: Path | None = None


@dataclass(frozen=True)
class FederationTls:
    """Where the centre's TLS files live (CA key and server key included: they stay at the centre)."""

    folder: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "folder", Path(self.folder))

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca-key.pem"

    @property
    def server_cert(self) -> Path:
        return self.folder / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.folder / "server-key.pem"

    def client(self, market: str) -> ClientTls:
        """create_federation_tls only (one process playing every market): a market's files in this folder."""
        return ClientTls(self.folder / f"client-{market}.pem", self.folder / f"client-{market}-key.pem", self.ca_cert)


@dataclass(frozen=True)
class MarketTls:
    """Where one market keeps its TLS files, in its own keys folder (``<keys_dir>/tls/<federation>/<market>``)."""

    folder: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "folder", Path(self.folder))

    @property
    def key(self) -> Path:
        return self.folder / "key.pem"

    @property
    def cert(self) -> Path:
        return self.folder / "cert.pem"

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def csr(self) -> Path:
        return self.folder / "request.csr"

    def client(self) -> ClientTls:
        return ClientTls(self.cert, self.key, self.ca_cert)


def _now(now: dt.datetime | None) -> dt.datetime:
    return now or dt.datetime.now(dt.timezone.utc)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedpipe"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def common_name(subject: x509.Name) -> str | None:
    names = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if len(names) == 1 else None


def generate_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def issue_ca(common_name: str = "fedpipe federation CA", now: dt.datetime | None = None):
    """A self-signed CA: returns (certificate, private key)."""
    now = _now(now)
    key = generate_key()
    cert = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def _leaf(ca_cert: x509.Certificate, ca_key, common_name: str, public_key, validity: dt.timedelta, *,
          server_host: str | None = None, now: dt.datetime | None = None) -> x509.Certificate:
    now = _now(now)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server_host else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(ca_cert.subject)
               .public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(min(now + validity, ca_cert.not_valid_after_utc))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    if server_host:
        try:
            names = [x509.IPAddress(ipaddress.ip_address(server_host))]
        except ValueError:
            names = [x509.DNSName(server_host)]
        if server_host in ("127.0.0.1", "::1"):
            names.append(x509.DNSName("localhost"))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def issue_certificate(ca_cert: x509.Certificate, ca_key, common_name: str, *, server_host: str | None = None,
                      now: dt.datetime | None = None):
    """A new key and a leaf certificate for it: a server one when ``server_host`` is given, else a client one.

    Only the centre's own server key, and create_federation_tls, are made this way; markets send CSRs.
    """
    key = generate_key()
    validity = SERVER_VALIDITY if server_host else CLIENT_VALIDITY
    return _leaf(ca_cert, ca_key, common_name, key.public_key(), validity, server_host=server_host, now=now), key


# --- the market's side -----------------------------------------------------------------------------


def build_csr(key: ec.EllipticCurvePrivateKey, market: str) -> x509.CertificateSigningRequest:
    """A certificate signing request for ``key`` in the market's name (its common name)."""
    return x509.CertificateSigningRequestBuilder().subject_name(_name(market)).sign(key, hashes.SHA256())


def load_key(path: Path, market: str) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise TlsError(f"market '{market}': {path}: unreadable TLS key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TlsError(f"market '{market}': {path}: the TLS key is not an ECDSA key")
    return key


def load_certificate(data: bytes, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise TlsError(f"{what}: not a PEM certificate ({exc})") from None


def check_client_certificate(cert: x509.Certificate, key, ca_cert: x509.Certificate, market: str,
                             now: dt.datetime | None = None, valid_for: dt.timedelta = dt.timedelta(0)) -> None:
    """Raise TlsError unless ``cert`` is the CA's client certificate for ``market`` (and, given ``key``, for
    that key), valid now and for ``valid_for`` more."""
    now = _now(now)
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise TlsError(f"market '{market}': TLS certificate not issued by the federation's current CA") from None
    if common_name(cert.subject) != market:
        raise TlsError(f"market '{market}': TLS certificate is for '{common_name(cert.subject)}'")
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = []
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        raise TlsError(f"market '{market}': TLS certificate is not a client certificate (no clientAuth usage)")
    if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc - valid_for:
        raise TlsError(f"market '{market}': TLS certificate valid {cert.not_valid_before_utc:%Y-%m-%d %H:%M} to "
                       f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, not usable now")
    if key is not None and cert.public_key().public_numbers() != key.public_key().public_numbers():
        raise TlsError(f"market '{market}': TLS certificate does not match this market's key")


def current_certificate(files: MarketTls, market: str, ca_cert: x509.Certificate,
                        now: dt.datetime | None = None) -> x509.Certificate | None:
    """The market's certificate if it can be kept: issued by ``ca_cert``, for its key, not near its end."""
    if not (files.key.exists() and files.cert.exists()):
        return None
    try:
        cert = load_certificate(files.cert.read_bytes(), str(files.cert))
        check_client_certificate(cert, load_key(files.key, market), ca_cert, market, now, valid_for=RENEW_WITHIN)
    except TlsError:
        return None
    return cert


def ensure_request(files: MarketTls, market: str) -> x509.CertificateSigningRequest:
    """A fresh key (mode 0600, at the market) and a CSR for it; the CSR is also kept next to the key."""
    key = generate_key()
    write_pem(files.key, key)
    csr = build_csr(key, market)
    write_bytes(files.csr, csr.public_bytes(serialization.Encoding.PEM))
    return csr


def install_certificate(files: MarketTls, market: str, cert_pem: bytes, ca_pem: bytes,
                        now: dt.datetime | None = None) -> ClientTls:
    """Check an issued certificate against the market's key and the CA, then keep both next to the key."""
    ca_cert = load_certificate(ca_pem, f"market '{market}': CA certificate")
    cert = load_certificate(cert_pem, f"market '{market}': issued certificate")
    check_client_certificate(cert, load_key(files.key, market), ca_cert, market, now)
    write_pem(files.ca_cert, ca_cert)
    write_pem(files.cert, cert)
    return files.client()


# --- the centre's side -----------------------------------------------------------------------------


def load_csr(data: bytes, market: str) -> x509.CertificateSigningRequest:
    try:
        return x509.load_pem_x509_csr(data)
    except ValueError as exc:
        raise TlsError(f"market '{market}': not a PEM certificate signing request ({exc})") from None


def sign_csr(ca_cert: x509.Certificate, ca_key, csr: x509.CertificateSigningRequest, market: str, *,
             now: dt.datetime | None = None, validity: dt.timedelta = CLIENT_VALIDITY) -> x509.Certificate:
    """A client certificate (clientAuth, short-lived) for the key in ``market``'s CSR, after checking the CSR.

    Only the subject's common name and the public key are taken from the CSR; any extension it asks for is not.
    """
    if not csr.is_signature_valid:
        raise TlsError(f"market '{market}': the CSR's own signature does not verify (tampered or broken)")
    if common_name(csr.subject) != market:
        raise TlsError(f"market '{market}': the CSR asks for common name '{common_name(csr.subject)}', "
                       f"expected '{market}'")
    public_key = csr.public_key()
    if not (isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name == "secp256r1"):
        raise TlsError(f"market '{market}': the CSR's key is not ECDSA P-256")
    return _leaf(ca_cert, ca_key, market, public_key, validity, now=now)


def load_ca(files: FederationTls):
    """(certificate, key) of the federation's CA."""
    try:
        return (x509.load_pem_x509_certificate(files.ca_cert.read_bytes()),
                serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None))
    except (OSError, ValueError) as exc:
        raise TlsError(f"{files.folder}: the federation's CA is missing or unreadable ({exc}); "
                       f"create it with `fedpipe keys tls`") from None


def ensure_ca(folder: str | Path, *, rotate: bool = False, now: dt.datetime | None = None) -> FederationTls:
    """The federation's CA in ``folder``: kept while valid for a client certificate's lifetime, else new.

    A new CA makes every market's certificate useless: markets then ask for new ones at the next round.
    """
    files = FederationTls(Path(folder))
    if not rotate and files.ca_cert.exists() and files.ca_key.exists():
        ca_cert, _ = load_ca(files)
        if ca_cert.not_valid_after_utc - CLIENT_VALIDITY > _now(now):
            return files
    ca_cert, ca_key = issue_ca(now=now)
    write_pem(files.ca_key, ca_key)
    write_pem(files.ca_cert, ca_cert)
    return files


def issue_server(files: FederationTls, server_host: str = "127.0.0.1") -> FederationTls:
    """A new server key and certificate (for the address markets dial), signed by the CA; both stay here."""
    ca_cert, ca_key = load_ca(files)
    cert, key = issue_certificate(ca_cert, ca_key, "fedpipe aggregator", server_host=server_host)
    write_pem(files.server_key, key)
    write_pem(files.server_cert, cert)
    return files


# --- files -----------------------------------------------------------------------------------------


def write_bytes(path: Path, data: bytes, mode: int = 0o644) -> Path:
    """Write through an atomic replace, with ``mode`` from the start (a key is never readable by others)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return path


def write_pem(path: Path, obj) -> Path:
    """Write a certificate (0644) or a private key (0600)."""
    if isinstance(obj, x509.Certificate):
        return write_bytes(path, obj.public_bytes(serialization.Encoding.PEM))
    return write_bytes(path, obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()), 0o600)


def create_federation_tls(folder: str | Path, markets: list[str], server_host: str = "127.0.0.1") -> FederationTls:
    """Tests and benchmarks only, where one process plays the centre and every market: a CA, a server
    certificate and, for each market without one, a key and a certificate through the same CSR path.

    A real federation never does this: each market makes its own key (fedpipe.tls_enrolment).
    """
    files = issue_server(ensure_ca(folder), server_host)
    ca_cert, ca_key = load_ca(files)
    for market in markets:
        client = files.client(market)
        if not (client.cert.exists() and client.key.exists()):
            key = generate_key()
            write_pem(client.key, key)
            write_pem(client.cert, sign_csr(ca_cert, ca_key, build_csr(key, market), market))
    return files
