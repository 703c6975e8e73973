"""fedpipe.keys: identities on disk, with real keys in tmp_path."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from fedpipe.errors import FedpipeError
from fedpipe.keys import (
    Identity,
    KeyFileError,
    PublicIdentity,
    ensure_identity,
    generate_identity,
    load_identity,
    load_public_identity,
    parse_enc_public,
    parse_sign_public,
)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generate_load_round_trip(tmp_path):
    pub = generate_identity(tmp_path, "FD001")
    assert pub.party == "FD001"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FD001.enc.pem", "FD001.pub.json", "FD001.sign.pem"]
    ident = load_identity(tmp_path, "FD001")
    assert isinstance(ident, Identity)
    assert ident.public == pub
    assert load_public_identity(tmp_path, "FD001") == pub
    assert b"BEGIN PRIVATE KEY" in (tmp_path / "FD001.enc.pem").read_bytes()  # PKCS8, unencrypted
    # the signing key pair really matches the published public key
    parse_sign_public(pub.sign_public).verify(ident.sign_private.sign(b"m"), b"m")


def test_public_identity_dict_round_trip_and_fingerprint(tmp_path):
    pub = generate_identity(tmp_path, "aggregator")
    assert PublicIdentity.from_dict(pub.to_dict()) == pub
    assert json.loads((tmp_path / "aggregator.pub.json").read_text()) == pub.to_dict()
    assert len(base64.b64decode(pub.enc_public, validate=True)) == 32
    assert len(pub.fingerprint) == 16 and int(pub.fingerprint, 16) >= 0
    other = generate_identity(tmp_path, "FD002")
    assert other.fingerprint != pub.fingerprint
    with pytest.raises(Exception):  # frozen
        pub.party = "x"  # type: ignore[misc]


def test_private_key_modes_are_exactly_0600(tmp_path):
    old = os.umask(0o000)  # even with a permissive umask
    try:
        generate_identity(tmp_path, "FD001")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "FD001.enc.pem") == 0o600
    assert _mode(tmp_path / "FD001.sign.pem") == 0o600
    assert _mode(tmp_path / "FD001.pub.json") == 0o644
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temp files left behind


def test_passphrase_protection(tmp_path):
    pub = generate_identity(tmp_path, "FD001", passphrase=b"correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "FD001.sign.pem").read_bytes()
    assert load_identity(tmp_path, "FD001", passphrase=b"correct horse").public == pub
    with pytest.raises(KeyFileError, match=r"FD001\.enc\.pem.*wrong passphrase"):
        load_identity(tmp_path, "FD001", passphrase=b"wrong")
    with pytest.raises(KeyFileError, match="passphrase is required"):
        load_identity(tmp_path, "FD001")
    # the public identity needs no passphrase
    assert load_public_identity(tmp_path, "FD001") == pub


def test_passphrase_given_for_unencrypted_key(tmp_path):
    generate_identity(tmp_path, "FD001")
    with pytest.raises(KeyFileError, match="not encrypted"):
        load_identity(tmp_path, "FD001", passphrase=b"x")


def test_empty_passphrase_rejected(tmp_path):
    with pytest.raises(KeyFileError, match="passphrase"):
        generate_identity(tmp_path, "FD001", passphrase=b"")


def test_refuses_overwrite(tmp_path):
    pub = generate_identity(tmp_path, "FD001")
    before = (tmp_path / "FD001.sign.pem").read_bytes()
    with pytest.raises(KeyFileError, match="already exist.*overwrite"):
        generate_identity(tmp_path, "FD001")
    assert (tmp_path / "FD001.sign.pem").read_bytes() == before
    new = generate_identity(tmp_path, "FD001", overwrite=True)
    assert new != pub
    assert load_identity(tmp_path, "FD001").public == new == load_public_identity(tmp_path, "FD001")
    assert _mode(tmp_path / "FD001.enc.pem") == 0o600


def test_missing_key_names_file_and_command(tmp_path):
    with pytest.raises(KeyFileError, match=r"FD003\.enc\.pem.*fedpipe keys init --market FD003"):
        load_identity(tmp_path, "FD003")
    with pytest.raises(KeyFileError, match=r"FD003\.pub\.json.*fedpipe keys init --market FD003"):
        load_public_identity(tmp_path, "FD003")
    assert issubclass(KeyFileError, FedpipeError)


def test_warns_on_group_readable_private_key(tmp_path, caplog):
    generate_identity(tmp_path, "FD001")
    os.chmod(tmp_path / "FD001.sign.pem", 0o640)
    with caplog.at_level(logging.WARNING, logger="fedpipe.keys"):
        load_identity(tmp_path, "FD001")
    assert any("FD001.sign.pem" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_no_warning_for_0600(tmp_path, caplog):
    generate_identity(tmp_path, "FD001")
    with caplog.at_level(logging.WARNING, logger="fedpipe.keys"):
        load_identity(tmp_path, "FD001")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_wrong_key_kind_in_file(tmp_path):
    generate_identity(tmp_path, "FD001")
    os.replace(tmp_path / "FD001.sign.pem", tmp_path / "FD001.enc.pem")  # Ed25519 key where X25519 belongs
    (tmp_path / "FD001.sign.pem").write_bytes(b"")
    os.chmod(tmp_path / "FD001.sign.pem", 0o600)
    with pytest.raises(KeyFileError, match=r"FD001\.enc\.pem.*expected X25519PrivateKey"):
        load_identity(tmp_path, "FD001")


def test_ensure_identity_is_idempotent(tmp_path):
    keydir = tmp_path / "keys" / "nested"  # created on demand
    first = ensure_identity(keydir, "FD001")
    pem = (keydir / "FD001.enc.pem").read_bytes()
    assert ensure_identity(keydir, "FD001") == first
    assert (keydir / "FD001.enc.pem").read_bytes() == pem
    (keydir / "FD001.pub.json").unlink()  # a lost public file is rebuilt from the private keys
    assert ensure_identity(keydir, "FD001") == first
    assert _mode(keydir / "FD001.pub.json") == 0o644


def test_ensure_identity_refuses_half_a_key_set(tmp_path):
    generate_identity(tmp_path, "FD001")
    (tmp_path / "FD001.sign.pem").unlink()
    with pytest.raises(KeyFileError, match=r"incomplete.*FD001\.sign\.pem"):
        ensure_identity(tmp_path, "FD001")


def test_bad_base64_public_key():
    with pytest.raises(KeyFileError, match="encryption public key: not valid base64"):
        parse_enc_public("not base64!!")
    with pytest.raises(KeyFileError, match="signing public key: expected 32 raw bytes, got 3"):
        parse_sign_public(base64.b64encode(b"abc").decode())
    with pytest.raises(KeyFileError, match="base64"):
        PublicIdentity.from_dict({"party": "FD001", "enc_public": "%%%", "sign_public": "%%%"})
    with pytest.raises(KeyFileError, match="missing"):
        PublicIdentity.from_dict({"party": "FD001"})


def test_parse_valid_public_keys(tmp_path):
    pub = generate_identity(tmp_path, "FD001")
    assert isinstance(parse_enc_public(pub.enc_public), X25519PublicKey)
    assert isinstance(parse_sign_public(pub.sign_public), Ed25519PublicKey)


def test_corrupt_public_file(tmp_path):
    pub = generate_identity(tmp_path, "FD001")
    path = tmp_path / "FD001.pub.json"
    path.write_text(json.dumps({**pub.to_dict(), "sign_public": "AAAA"}))
    with pytest.raises(KeyFileError, match=r"FD001\.pub\.json.*32 raw bytes"):
        load_public_identity(tmp_path, "FD001")
    path.write_text(json.dumps({**pub.to_dict(), "party": "FD002"}))
    with pytest.raises(KeyFileError, match="expected 'FD001'"):
        load_public_identity(tmp_path, "FD001")


@pytest.mark.parametrize("party", ["", "../evil", "a/b", ".hidden", "x" * 65])
def test_rejects_unsafe_party_names(tmp_path, party):
    with pytest.raises(KeyFileError, match="invalid party name"):
        generate_identity(tmp_path, party)
    assert not list(tmp_path.iterdir())


# --- rotation --------------------------------------------------------------------------------------

from datetime import datetime, timedelta, timezone  # noqa: E402

from fedpipe.keys import (  # noqa: E402
    PASSPHRASE_ENV,
    RetiredKey,
    decryption_identities,
    is_encrypted,
    load_previous,
    rotate_identity,
    verification_keys,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


def test_rotation_keeps_old_keys_trusted_for_the_grace_period(tmp_path):
    old = generate_identity(tmp_path, "aggregator")
    new, retired = rotate_identity(tmp_path, "aggregator", grace=timedelta(days=7), now=T0)
    assert new != old and retired.identity == old and retired.not_after == T0 + timedelta(days=7)
    assert load_public_identity(tmp_path, "aggregator") == new == load_identity(tmp_path, "aggregator").public
    # inside the grace period both verify (current first), after it only the new one
    assert verification_keys(tmp_path, "aggregator", T0 + timedelta(days=6, hours=23)) == [new, old]
    assert verification_keys(tmp_path, "aggregator", T0 + timedelta(days=7)) == [new]
    # the aggregator can still decrypt with its retired private key during the grace period
    during = decryption_identities(tmp_path, "aggregator", now=T0 + timedelta(days=1))
    assert [i.public for i in during] == [new, old]
    assert [i.public for i in decryption_identities(tmp_path, "aggregator", now=T0 + timedelta(days=8))] == [new]
    # retired private keys keep mode 0600, the history is public
    retired_files = sorted((tmp_path / "retired").iterdir())
    assert [p.name for p in retired_files] == [f"aggregator-{old.fingerprint}.enc.pem",
                                                f"aggregator-{old.fingerprint}.sign.pem"]
    assert all(_mode(p) == 0o600 for p in retired_files) and _mode(tmp_path / "retired") == 0o700
    assert _mode(tmp_path / "aggregator.enc.pem") == 0o600
    assert load_previous(tmp_path, "aggregator") == [retired]


def test_rotating_twice_keeps_the_history(tmp_path):
    first = generate_identity(tmp_path, "FD001")
    second, _ = rotate_identity(tmp_path, "FD001", grace=timedelta(hours=1), now=T0)
    third, _ = rotate_identity(tmp_path, "FD001", grace=timedelta(days=2), now=T0 + timedelta(minutes=30))
    assert [r.identity for r in load_previous(tmp_path, "FD001")] == [first, second]
    assert verification_keys(tmp_path, "FD001", T0 + timedelta(minutes=45)) == [third, first, second]
    assert verification_keys(tmp_path, "FD001", T0 + timedelta(hours=2)) == [third, second]


def test_rotation_needs_existing_keys_and_the_passphrase(tmp_path):
    with pytest.raises(KeyFileError, match="cannot rotate 'FD001'.*fedpipe keys init"):
        rotate_identity(tmp_path, "FD001", grace=timedelta(days=1))
    generate_identity(tmp_path, "FD001", passphrase=b"pw")
    before = (tmp_path / "FD001.sign.pem").read_bytes()
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        rotate_identity(tmp_path, "FD001", grace=timedelta(days=1), passphrase=b"nope")
    assert (tmp_path / "FD001.sign.pem").read_bytes() == before and not (tmp_path / "retired").exists()
    new, _ = rotate_identity(tmp_path, "FD001", grace=timedelta(days=1), passphrase=b"pw", now=T0)
    assert load_identity(tmp_path, "FD001", passphrase=b"pw").public == new
    with pytest.raises(KeyFileError, match="grace"):
        rotate_identity(tmp_path, "FD001", grace=timedelta(days=-1), passphrase=b"pw")


def test_retired_key_record_round_trip_and_errors(tmp_path):
    pub = generate_identity(tmp_path, "FD001")
    r = RetiredKey(pub, T0)
    assert RetiredKey.from_dict(r.to_dict()) == r
    assert r.valid_at(T0 - timedelta(seconds=1)) and not r.valid_at(T0)
    with pytest.raises(KeyFileError, match="not_after"):
        RetiredKey.from_dict({**pub.to_dict(), "not_after": "tomorrow"})
    (tmp_path / "FD001.previous.json").write_text("{}")
    with pytest.raises(KeyFileError, match=r"FD001\.previous\.json.*list"):
        load_previous(tmp_path, "FD001")


def test_passphrase_from_the_environment(tmp_path, monkeypatch):
    pub = generate_identity(tmp_path, "FD001", passphrase=b"from env")
    with pytest.raises(KeyFileError, match=f"passphrase is required.*{PASSPHRASE_ENV}"):
        load_identity(tmp_path, "FD001")
    monkeypatch.setenv(PASSPHRASE_ENV, "from env")
    assert load_identity(tmp_path, "FD001").public == pub


def test_rotation_never_downgrades_keys_protected_through_the_environment(tmp_path, monkeypatch):
    generate_identity(tmp_path, "aggregator", passphrase=b"from env")
    monkeypatch.setenv(PASSPHRASE_ENV, "from env")
    new, _ = rotate_identity(tmp_path, "aggregator", grace=timedelta(days=1), now=T0)  # no passphrase argument
    for name in ("aggregator.enc.pem", "aggregator.sign.pem"):
        assert (tmp_path / name).read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        assert _mode(tmp_path / name) == 0o600
    assert is_encrypted(tmp_path, "aggregator")
    monkeypatch.delenv(PASSPHRASE_ENV)
    with pytest.raises(KeyFileError, match="passphrase is required"):
        load_identity(tmp_path, "aggregator")
    assert load_identity(tmp_path, "aggregator", b"from env").public == new
    # the retired copies keep their protection too, and still open with the same passphrase
    assert [i.public for i in decryption_identities(tmp_path, "aggregator", b"from env", now=T0)][0] == new
    assert all(p.read_bytes().startswith(b"-----BEGIN ENCRYPTED") for p in (tmp_path / "retired").iterdir())


def test_rotation_of_protected_keys_without_any_passphrase_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    generate_identity(tmp_path, "FD001", passphrase=b"pw")
    before = (tmp_path / "FD001.enc.pem").read_bytes()
    with pytest.raises(KeyFileError, match="passphrase is required"):
        rotate_identity(tmp_path, "FD001", grace=timedelta(days=1))
    assert (tmp_path / "FD001.enc.pem").read_bytes() == before and not (tmp_path / "retired").exists()
    assert not is_encrypted(tmp_path, "nobody") and not is_encrypted(tmp_path / "missing", "FD001")


def test_rotation_can_add_a_passphrase_to_unprotected_keys(tmp_path, monkeypatch):
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    old = generate_identity(tmp_path, "FD001")
    new, _ = rotate_identity(tmp_path, "FD001", grace=timedelta(days=1), passphrase=b"now protected", now=T0)
    assert is_encrypted(tmp_path, "FD001") and load_identity(tmp_path, "FD001", b"now protected").public == new
    retired = sorted((tmp_path / "retired").iterdir())
    assert len(retired) == 2 and all(p.read_bytes().startswith(b"-----BEGIN ENCRYPTED") for p in retired)
    assert all(_mode(p) == 0o600 for p in retired)
    # the old keys, retired, open with the new passphrase: what was sealed to them in grace is not lost
    assert [i.public for i in decryption_identities(tmp_path, "FD001", b"now protected", now=T0)] == [new, old]
