"""fedpipe.tls: a CA, a loopback server certificate, one client certificate per market, keys 0600."""

import ipaddress
import stat

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from fedpipe.tls import create_federation_tls


def _cert(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_certificates_chain_to_the_ca_and_keys_are_private(tmp_path):
    files = create_federation_tls(tmp_path / "tls", ["FD001", "FD002"])
    ca = _cert(files.ca_cert)
    for leaf in (files.server_cert, files.client("FD001").cert, files.client("FD002").cert):
        cert = _cert(leaf)
        ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        assert cert.issuer == ca.subject
    for key in (files.ca_key, files.server_key, files.client("FD001").key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    san = _cert(files.server_cert).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    cn = _cert(files.client("FD002").cert).subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
    assert cn == "FD002"


def test_adding_a_market_reuses_the_ca(tmp_path):
    first = create_federation_tls(tmp_path, ["A"])
    ca = first.ca_cert.read_bytes()
    client_a = first.client("A").cert.read_bytes()
    second = create_federation_tls(tmp_path, ["A", "B"])
    assert second.ca_cert.read_bytes() == ca and second.client("A").cert.read_bytes() == client_a
    assert _cert(second.client("B").cert).issuer == _cert(second.ca_cert).subject
