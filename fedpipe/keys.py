"""Identities of the parties in a federation: each market (e.g. "FD001") and the "aggregator".

A party owns two key pairs, stored as PKCS8 PEM files in a key directory:

    <party>.enc.pem    X25519 private key: others encrypt to it (mode 0600)
    <party>.sign.pem   Ed25519 private key: it signs with it (mode 0600)
    <party>.pub.json   its PublicIdentity, safe to share (mode 0644)

Rotation (`rotate_identity`) moves the current private keys to ``retired/<party>-<fingerprint>.{enc,sign}.pem`` and
records the old public identity with a not-after time in ``<party>.previous.json``: until then the old keys still
verify (and, for the aggregator, still decrypt), so updates sealed just before a rotation are not lost.

Files are created with their final mode from the start and written atomically
(temp file in the same directory, then os.replace).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import re
import secrets
import stat
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from fedpipe.errors import FedpipeError

__all__ = [
    "PASSPHRASE_ENV",
    "Identity",
    "KeyFileError",
    "PublicIdentity",
    "RetiredKey",
    "decryption_identities",
    "ensure_identity",
    "generate_identity",
    "is_encrypted",
    "load_identity",
    "load_previous",
    "load_public_identity",
    "parse_enc_public",
    "parse_sign_public",
    "rotate_identity",
    "verification_keys",
]

_log = logging.getLogger(__name__)

PASSPHRASE_ENV = "FEDPIPE_KEY_PASSPHRASE"  # where unattended runs and `fedpipe keys` find a key passphrase
_PARTY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


class KeyFileError(FedpipeError):
    """A key file is missing, unreadable, of the wrong kind, or a public key is malformed."""


def _init_hint(party: str) -> str:
    return f"run `fedpipe keys init --market {party}` to create it"


def _check_party(party: str) -> str:
    if not isinstance(party, str) or not _PARTY_RE.fullmatch(party):
        raise KeyFileError(
            f"invalid party name {party!r}: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return party


def _paths(directory: Path, party: str) -> tuple[Path, Path, Path]:
    d = Path(directory)
    _check_party(party)
    return d / f"{party}.enc.pem", d / f"{party}.sign.pem", d / f"{party}.pub.json"


def _decode_raw_key(b64: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, TypeError, ValueError) as exc:
        raise KeyFileError(f"{what}: not valid base64 ({exc})") from None
    if len(raw) != 32:
        raise KeyFileError(f"{what}: expected 32 raw bytes, got {len(raw)}")
    return raw


def parse_enc_public(b64: str) -> X25519PublicKey:
    """Decode a base64 raw X25519 public key; raise KeyFileError if malformed."""
    return X25519PublicKey.from_public_bytes(_decode_raw_key(b64, "encryption public key"))


def parse_sign_public(b64: str) -> Ed25519PublicKey:
    """Decode a base64 raw Ed25519 public key; raise KeyFileError if malformed."""
    return Ed25519PublicKey.from_public_bytes(_decode_raw_key(b64, "signing public key"))


@dataclass(frozen=True)
class PublicIdentity:
    """What others need to encrypt to a party and verify its signatures. Validated on construction."""

    party: str
    enc_public: str  # base64 (standard, padded) of the raw 32-byte X25519 public key
    sign_public: str  # base64 (standard, padded) of the raw 32-byte Ed25519 public key

    def __post_init__(self) -> None:
        _check_party(self.party)
        parse_enc_public(self.enc_public)
        parse_sign_public(self.sign_public)

    @property
    def fingerprint(self) -> str:
        """First 16 hex chars of sha256(enc_public_raw || sign_public_raw), for logs."""
        raw = base64.b64decode(self.enc_public) + base64.b64decode(self.sign_public)
        return hashlib.sha256(raw).hexdigest()[:16]

    def to_dict(self) -> dict[str, str]:
        return {"party": self.party, "enc_public": self.enc_public, "sign_public": self.sign_public}

    @classmethod
    def from_dict(cls, data: Any) -> PublicIdentity:
        if not isinstance(data, dict):
            raise KeyFileError(f"public identity must be a JSON object, got {type(data).__name__}")
        missing = [k for k in ("party", "enc_public", "sign_public") if not isinstance(data.get(k), str)]
        if missing:
            raise KeyFileError(f"public identity: missing or non-string field(s) {', '.join(missing)}")
        return cls(data["party"], data["enc_public"], data["sign_public"])


@dataclass(frozen=True)
class Identity:
    """A party's private keys. Never leaves the party's machine."""

    party: str
    enc_private: X25519PrivateKey
    sign_private: Ed25519PrivateKey

    @property
    def public(self) -> PublicIdentity:
        enc = self.enc_private.public_key().public_bytes(*_RAW)
        sign = self.sign_private.public_key().public_bytes(*_RAW)
        return PublicIdentity(
            self.party, base64.b64encode(enc).decode("ascii"), base64.b64encode(sign).decode("ascii")
        )


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write to a temp file in path's directory created with `mode`, then os.replace it into place."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # exact mode whatever the umask, set before any byte is written
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_public(path: Path, pub: PublicIdentity) -> None:
    _write_atomic(path, (json.dumps(pub.to_dict(), indent=2, sort_keys=True) + "\n").encode(), 0o644)


def generate_identity(
    directory: Path, party: str, passphrase: bytes | None = None, *, overwrite: bool = False
) -> PublicIdentity:
    """Create both key pairs of `party` in `directory` and return its public identity.

    Refuses to replace existing private keys unless overwrite=True.
    """
    enc_path, sign_path, pub_path = _paths(directory, party)
    if not overwrite:
        existing = [str(p) for p in (enc_path, sign_path) if p.exists()]
        if existing:
            raise KeyFileError(
                f"keys for '{party}' already exist ({', '.join(existing)}); refusing to overwrite them "
                "(`fedpipe keys init --force` replaces them, and every party must then register the new public keys; "
                "`fedpipe keys rotate` keeps the old ones trusted for a grace period)"
            )
    if passphrase is not None and (not isinstance(passphrase, bytes) or not passphrase):
        raise KeyFileError("passphrase must be non-empty bytes, or None for unencrypted keys")
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    Path(directory).mkdir(parents=True, exist_ok=True, mode=0o700)
    ident = Identity(party, X25519PrivateKey.generate(), Ed25519PrivateKey.generate())
    for path, key in ((enc_path, ident.enc_private), (sign_path, ident.sign_private)):
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
        _write_atomic(path, pem, 0o600)
    pub = ident.public
    _write_public(pub_path, pub)
    _log.info("generated identity %s (fingerprint %s) in %s", party, pub.fingerprint, directory)
    return pub


def _load_private(path: Path, party: str, passphrase: bytes | None, kind: type) -> Any:
    try:
        st = path.stat()
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"private key file {path} not found: {_init_hint(party)}") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read private key file {path}: {exc.strerror or exc}") from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        _log.warning(
            "private key file %s is readable by group/others (mode %o); run: chmod 600 %s",
            path, stat.S_IMODE(st.st_mode), path,
        )
    if passphrase is None and b"ENCRYPTED" in data[:64] and os.environ.get(PASSPHRASE_ENV):
        passphrase = os.environ[PASSPHRASE_ENV].encode()  # unattended runs: the passphrase from the environment
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError:
        if passphrase is None:
            raise KeyFileError(
                f"private key file {path} is passphrase-protected: a passphrase is required (set {PASSPHRASE_ENV})"
            ) from None
        raise KeyFileError(f"private key file {path} is not encrypted: load it without a passphrase") from None
    except ValueError:
        hint = "wrong passphrase, or " if passphrase is not None else ""
        raise KeyFileError(
            f"cannot decrypt or parse private key file {path}: {hint}not a valid PKCS8 PEM key"
        ) from None
    if not isinstance(key, kind):
        raise KeyFileError(f"private key file {path} holds a {type(key).__name__}, expected {kind.__name__}")
    return key


def is_encrypted(directory: Path, party: str) -> bool:
    """Whether either of `party`'s private key files is passphrase-protected (False if they do not exist)."""
    for path in _paths(directory, party)[:2]:
        try:
            with open(path, "rb") as f:
                if b"ENCRYPTED" in f.read(64):  # "-----BEGIN ENCRYPTED PRIVATE KEY-----"
                    return True
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise KeyFileError(f"cannot read private key file {path}: {exc.strerror or exc}") from None
    return False


def load_identity(directory: Path, party: str, passphrase: bytes | None = None) -> Identity:
    """Load `party`'s private keys from `directory`; raise KeyFileError naming the file on any problem."""
    enc_path, sign_path, _ = _paths(directory, party)
    return Identity(
        party,
        _load_private(enc_path, party, passphrase, X25519PrivateKey),
        _load_private(sign_path, party, passphrase, Ed25519PrivateKey),
    )


def load_public_identity(directory: Path, party: str) -> PublicIdentity:
    """Load `<directory>/<party>.pub.json`; raise KeyFileError naming the file on any problem."""
    _, _, pub_path = _paths(directory, party)
    try:
        data = json.loads(pub_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KeyFileError(f"public identity file {pub_path} not found: {_init_hint(party)}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KeyFileError(f"cannot read public identity file {pub_path}: {exc}") from None
    try:
        pub = PublicIdentity.from_dict(data)
    except KeyFileError as exc:
        raise KeyFileError(f"{pub_path}: {exc}") from None
    if pub.party != party:
        raise KeyFileError(f"{pub_path}: holds the identity of '{pub.party}', expected '{party}'")
    return pub


def ensure_identity(directory: Path, party: str) -> PublicIdentity:
    """Return `party`'s public identity, generating unencrypted keys first if it has none (demo setup)."""
    enc_path, sign_path, pub_path = _paths(directory, party)
    have = [p.exists() for p in (enc_path, sign_path)]
    if not any(have):
        return generate_identity(directory, party)
    if not all(have):
        missing = enc_path if not have[0] else sign_path
        raise KeyFileError(
            f"incomplete keys for '{party}': {missing} is missing; restore it, or run "
            f"`fedpipe keys init --market {party}` with overwrite to replace both key pairs"
        )
    if pub_path.exists():
        return load_public_identity(directory, party)
    pub = load_identity(directory, party).public  # public file lost: rebuild it from the private keys
    _write_public(pub_path, pub)
    return pub


# --- rotation ------------------------------------------------------------------------------------


def _utc(when: datetime | None) -> datetime:
    when = when or datetime.now(timezone.utc)
    if when.tzinfo is None:
        raise ValueError("times must be timezone-aware (UTC)")
    return when.astimezone(timezone.utc)


@dataclass(frozen=True)
class RetiredKey:
    """A party's former public identity, still trusted until ``not_after`` (the end of the grace period)."""

    identity: PublicIdentity
    not_after: datetime

    def valid_at(self, when: datetime | None = None) -> bool:
        return _utc(when) < self.not_after

    def to_dict(self) -> dict[str, str]:
        return {**self.identity.to_dict(), "not_after": self.not_after.strftime("%Y-%m-%dT%H:%M:%SZ")}

    @classmethod
    def from_dict(cls, data: Any) -> RetiredKey:
        if not isinstance(data, dict) or not isinstance(data.get("not_after"), str):
            raise KeyFileError("retired key: needs party, enc_public, sign_public and a not_after time")
        try:
            not_after = datetime.strptime(data["not_after"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            raise KeyFileError(f"retired key: not_after {data['not_after']!r} is not YYYY-MM-DDTHH:MM:SSZ") from None
        return cls(PublicIdentity.from_dict({k: v for k, v in data.items() if k != "not_after"}), not_after)


def _previous_path(directory: Path, party: str) -> Path:
    return Path(directory) / f"{_check_party(party)}.previous.json"


def _retired_paths(directory: Path, party: str, fingerprint: str) -> tuple[Path, Path]:
    d = Path(directory) / "retired"
    return d / f"{party}-{fingerprint}.enc.pem", d / f"{party}-{fingerprint}.sign.pem"


def load_previous(directory: Path, party: str) -> list[RetiredKey]:
    """Every former identity of `party` recorded by rotation (expired ones included); [] if never rotated."""
    path = _previous_path(directory, party)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KeyFileError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, list):
        raise KeyFileError(f"{path}: expected a JSON list of retired keys")
    try:
        return [RetiredKey.from_dict(item) for item in data]
    except KeyFileError as exc:
        raise KeyFileError(f"{path}: {exc}") from None


def rotate_identity(
    directory: Path,
    party: str,
    *,
    grace: timedelta,
    passphrase: bytes | None = None,
    now: datetime | None = None,
) -> tuple[PublicIdentity, RetiredKey]:
    """Replace `party`'s key pairs; the old ones stay trusted for `grace` (returns the new identity and the old one).

    The old private keys move to ``retired/`` (mode 0600, same protection as before): a retired aggregator key
    still opens updates sealed to it during the grace period. Retired keys whose grace ended are listed but
    no longer trusted; delete ``retired/`` files by hand once nothing sealed to them can still arrive.

    Rotation never weakens protection: if the current keys are passphrase-protected, the new ones are encrypted
    with the passphrase that opens them (`passphrase`, else FEDPIPE_KEY_PASSPHRASE; neither: KeyFileError, nothing
    written). The passphrase is kept, not changed: retired keys in grace must open with the same one. Unprotected
    keys rotated with a `passphrase` gain it: the new keys and the retired copies are both encrypted with it.
    """
    if not isinstance(grace, timedelta) or grace < timedelta(0):
        raise KeyFileError(f"grace period must be a non-negative timedelta, got {grace!r}")
    now = _utc(now)
    enc_path, sign_path, _ = _paths(directory, party)
    missing = [str(p) for p in (enc_path, sign_path) if not p.exists()]
    if missing:
        raise KeyFileError(f"cannot rotate '{party}': {', '.join(missing)} not found; {_init_hint(party)}")
    if passphrase is None and is_encrypted(directory, party) and os.environ.get(PASSPHRASE_ENV):
        # the new keys get it too: without it they would be written unencrypted (a silent downgrade)
        passphrase = os.environ[PASSPHRASE_ENV].encode()
    adding = passphrase is not None and not is_encrypted(directory, party)  # rotation may add protection
    current = load_identity(directory, party, None if adding else passphrase)  # proves we hold the keys
    old = current.public
    retired = RetiredKey(old, now + grace)
    history = [r for r in load_previous(directory, party) if r.identity != old] + [retired]
    (Path(directory) / "retired").mkdir(mode=0o700, exist_ok=True)
    for src, dst, key in zip((enc_path, sign_path), _retired_paths(directory, party, old.fingerprint),
                             (current.enc_private, current.sign_private)):
        # retired keys open with the same passphrase as the new ones (the centre uses one for all)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.BestAvailableEncryption(passphrase)) if adding else src.read_bytes()
        _write_atomic(dst, pem, 0o600)
    history_bytes = (json.dumps([r.to_dict() for r in history], indent=2) + "\n").encode()
    _write_atomic(_previous_path(directory, party), history_bytes, 0o644)
    new = generate_identity(directory, party, passphrase, overwrite=True)  # encrypted iff the old keys were
    _log.info("rotated %s: %s -> %s, old keys trusted until %s", party, old.fingerprint, new.fingerprint,
              retired.to_dict()["not_after"])
    return new, retired


def verification_keys(directory: Path, party: str, now: datetime | None = None) -> list[PublicIdentity]:
    """`party`'s current public identity, then its former ones still inside their grace period."""
    current = load_public_identity(directory, party)
    return [current] + [r.identity for r in load_previous(directory, party)
                        if r.valid_at(now) and r.identity != current]


def decryption_identities(
    directory: Path, party: str, passphrase: bytes | None = None, now: datetime | None = None
) -> list[Identity]:
    """`party`'s current private keys, then its retired ones still inside their grace period (for decryption)."""
    out = [load_identity(directory, party, passphrase)]
    for retired in load_previous(directory, party):
        if not retired.valid_at(now):
            continue
        enc_path, sign_path = _retired_paths(directory, party, retired.identity.fingerprint)
        if enc_path.exists() and sign_path.exists():
            out.append(Identity(party, _load_private(enc_path, party, passphrase, X25519PrivateKey),
                                _load_private(sign_path, party, passphrase, Ed25519PrivateKey)))
    return out
