"""A small certificate authority for mutual TLS between the centre's gRPC server and the markets.

One CA per federation signs a server certificate (for the address markets dial, loopback by default) and one
client certificate per market (its common name is the market's name). Every party trusts only this CA, so a
client presenting a certificate from any other CA is refused during the TLS handshake.

API::

    files = create_federation_tls(folder, markets=["FD001", "FD002"], server_host="127.0.0.1")
    files.ca_cert, files.server_cert, files.server_key, files.client("FD001")  # -> ClientTls(cert, key)

``issue_ca``, ``issue_certificate`` and ``write_pem`` are the building blocks (used by ``fedpipe keys`` too).
Private keys are ECDSA P-256, written PEM-encoded with mode 0600 through an atomic replace.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class ClientTls:
    cert: Path
    key: Path


@dataclass(frozen=True)
class FederationTls:
    """Where a federation's TLS files live."""

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
        return ClientTls(self.folder / f"client-{market}.pem", self.folder / f"client-{market}-key.pem")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedpipe"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def issue_ca(common_name: str = "fedpipe federation CA", now: dt.datetime | None = None):
    """A self-signed CA: returns (certificate, private key)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def issue_certificate(ca_cert: x509.Certificate, ca_key, common_name: str, *, server_host: str | None = None,
                      now: dt.datetime | None = None):
    """A leaf certificate signed by the CA: a server certificate when ``server_host`` is given, else a client one."""
    now = now or dt.datetime.now(dt.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server_host else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
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
    return builder.sign(ca_key, hashes.SHA256()), key


def write_pem(path: Path, obj) -> Path:
    """Write a certificate (0644) or a private key (0600, never readable by others, even briefly)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(obj, x509.Certificate):
        data, mode = obj.public_bytes(serialization.Encoding.PEM), 0o644
    else:
        data, mode = obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()), 0o600
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


def create_federation_tls(folder: str | Path, markets: list[str], server_host: str = "127.0.0.1") -> FederationTls:
    """Create (or complete) a federation's CA, server certificate and one client certificate per market.

    An existing CA is reused, so adding a market later issues only that market's certificate.
    """
    files = FederationTls(Path(folder))
    if files.ca_cert.exists() and files.ca_key.exists():
        ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        ca_key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    else:
        ca_cert, ca_key = issue_ca()
        write_pem(files.ca_key, ca_key)
        write_pem(files.ca_cert, ca_cert)
    cert, key = issue_certificate(ca_cert, ca_key, "fedpipe aggregator", server_host=server_host)
    write_pem(files.server_key, key)
    write_pem(files.server_cert, cert)
    for market in markets:
        client = files.client(market)
        if not (client.cert.exists() and client.key.exists()):
            cert, key = issue_certificate(ca_cert, ca_key, market)
            write_pem(client.key, key)
            write_pem(client.cert, cert)
    return files
