"""Sealed, signed model updates and signed global models, shaped like Fernet.

A market seals its update to the aggregator; the aggregator opens it. Envelope, version 1:

    b"FPSEAL1\\n" | u32 len | header | u32 len | ciphertext | signature

The header is canonical JSON (format, kind, federation, round, market, parent, created, nbytes).
The ciphertext is HPKE (RFC 9180: X25519, HKDF-SHA256, AES-256-GCM) to the recipient with the
header bytes as `info`, so it is bound to federation, round, market and parent model. The last
64 bytes are the market's Ed25519 signature over every byte before them.

`parent` is always a sha256 (lowercase hex): of the global model the round starts from, or, before there is
one (round 1; fedavg's round 0), of the run's genesis document. At the start of every run the centre posts a
fresh genesis (``global/genesis.json``: federation, run id, time, random nonce), signed with kind
``GENESIS_KIND``; markets check that signature before sealing against it. So a first-round envelope captured in
one run does not open in another run of the same federation. Later rounds name a model's hash, and every model
the centre publishes carries the genesis hash (``fedpipe.central.bind_to_run``), so two runs never publish the same
bytes even when they build the same trees.

Global models are published with a detached signature document (`sign_model`/`verify_model`).
Every rejection raises `SealError`, whose message says which check failed.

Key rotation: a sender (or the model signer) may be trusted under several public identities at once (its current
keys and former ones still in their grace period, see `fedpipe.keys.rotate_identity`); any of them verifies. The
recipient may likewise hold several private identities; the envelope opens with whichever it was sealed to.
A market listed in `revoked` is refused before its signature is even checked. SECURITY.md documents the format.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import struct
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from fedpipe.errors import SealError
from fedpipe.keys import Identity, PublicIdentity, parse_enc_public, parse_sign_public

__all__ = ["describe", "open_update", "seal_update", "sha256_hex", "sign_model", "verify_model"]

_MAGIC = b"FPSEAL1\n"
_FORMAT = 1
_SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)
_U32 = struct.Struct(">I")
_SIG_LEN = 64
_HEADER_TYPES = {
    "format": int, "kind": str, "federation": str, "round": int,
    "market": str, "parent": str, "created": str, "nbytes": int,
}
_MODEL_FIELDS = {"format", "kind", "federation", "round", "sha256", "signer"}
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


KINDS = ("update", "metrics", "reveal")  # reveal: a survivor's secagg seeds (fedpipe.secure_round)
GENESIS_KIND = "run-genesis"  # signature kind of a run's genesis document (round 1's parent; fedpipe.central)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("utf-8")  # non-ASCII as \u escapes


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _as_list(keys: Any) -> list:
    return list(keys) if isinstance(keys, (list, tuple)) else [keys]


def _verifies(candidates: Sequence[PublicIdentity], signature: bytes, message: bytes) -> bool:
    for pub in candidates:
        try:
            parse_sign_public(pub.sign_public).verify(signature, message)
            return True
        except InvalidSignature:
            continue
    return False


def check_binding(federation: str, round: int, parent: str | None = None) -> None:
    """ValueError unless federation, round (and parent, a lowercase sha256) are well formed: what a header binds."""
    if not isinstance(federation, str) or not federation:
        raise ValueError("federation must be a non-empty string")
    if not _is_int(round) or round < 0:
        raise ValueError(f"round must be a non-negative int, got {round!r}")
    # no empty parent: round 1 starts from the run's genesis, so its envelopes fit no other run
    if parent is not None and not (isinstance(parent, str) and _SHA256_RE.fullmatch(parent)):
        raise ValueError("parent must be the lowercase sha256 hex of the model the round starts from "
                         "(before the first global model: of the run's signed genesis document)")


# --- updates -------------------------------------------------------------------------------------


def seal_update(
    payload: bytes,
    *,
    federation: str,
    round: int,
    market: str,
    parent: str,
    recipient: PublicIdentity,
    signer: Identity,
    kind: str = "update",
) -> bytes:
    """Encrypt `payload` to `recipient`, bind it to (kind, federation, round, market, parent) and sign it.

    `kind` is "update" for trees and "metrics" for a market's evaluation of a global model, so one can never
    be passed off as the other.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise TypeError(f"payload must be bytes, got {type(payload).__name__}")
    payload = bytes(payload)
    check_binding(federation, round, parent)
    if market != signer.party:
        raise ValueError(f"market '{market}' must seal with its own identity, not '{signer.party}'")
    header = _canonical({
        "format": _FORMAT,
        "kind": kind,
        "federation": federation,
        "round": round,
        "market": market,
        "parent": parent,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "nbytes": len(payload),
    })
    ciphertext = _SUITE.encrypt(payload, parse_enc_public(recipient.enc_public), info=header)
    body = b"".join((_MAGIC, _U32.pack(len(header)), header, _U32.pack(len(ciphertext)), ciphertext))
    return body + signer.sign_private.sign(body)


def _parse(envelope: bytes) -> tuple[dict[str, Any], bytes, bytes, bytes, bytes]:
    """Split an envelope into (header, header_bytes, ciphertext, signed_body, signature). No crypto."""
    if not isinstance(envelope, (bytes, bytearray, memoryview)):
        raise SealError(f"malformed envelope: expected bytes, got {type(envelope).__name__}")
    env = bytes(envelope)
    m = len(_MAGIC)
    if len(env) < m + 4:
        raise SealError(f"truncated envelope: {len(env)} bytes, too short for magic and header length")
    if env[:m] != _MAGIC:  # before the lengths, so that a stray file is named as such
        raise SealError(f"bad magic {env[:m]!r}: not a fedpipe sealed update (expected {_MAGIC!r})")
    (hlen,) = _U32.unpack_from(env, m)
    ct_len_at = m + 4 + hlen
    if len(env) < ct_len_at + 4:
        raise SealError(f"truncated envelope: header length {hlen} runs past the end ({len(env)} bytes)")
    (clen,) = _U32.unpack_from(env, ct_len_at)
    sig_at = ct_len_at + 4 + clen
    if len(env) != sig_at + _SIG_LEN:
        what = "truncated" if len(env) < sig_at + _SIG_LEN else "malformed"
        raise SealError(
            f"{what} envelope: lengths say {sig_at + _SIG_LEN} bytes (incl. 64-byte signature), got {len(env)}"
        )
    header_bytes = env[m + 4 : ct_len_at]
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SealError(f"malformed header: not UTF-8 JSON ({exc})") from None
    if not isinstance(header, dict):
        raise SealError("malformed header: not a JSON object")
    if _is_int(header.get("format")) and header["format"] != _FORMAT:
        raise SealError(f"unsupported format version {header['format']} (this fedpipe reads version {_FORMAT})")
    if set(header) != set(_HEADER_TYPES):
        raise SealError(f"malformed header: fields {sorted(header)}, expected {sorted(_HEADER_TYPES)}")
    bad = [k for k, t in _HEADER_TYPES.items() if not (_is_int(header[k]) if t is int else isinstance(header[k], t))]
    if bad:
        raise SealError(f"malformed header: wrong type for field(s) {', '.join(bad)}")
    if header["kind"] not in KINDS:
        raise SealError(f"wrong kind {header['kind']!r}: expected one of {KINDS}")
    if _canonical(header) != header_bytes:
        raise SealError("malformed header: not canonical JSON")
    return header, header_bytes, env[ct_len_at + 4 : sig_at], env[:sig_at], env[sig_at:]


def describe(envelope: bytes) -> dict[str, Any]:
    """Return an envelope's header without verifying or decrypting it (for logs and inspection)."""
    return _parse(envelope)[0]


def open_update(
    envelope: bytes,
    *,
    federation: str,
    round: int,
    parent: str,
    senders: Mapping[str, PublicIdentity | Sequence[PublicIdentity]],
    recipient: Identity | Sequence[Identity],
    max_bytes: int = 64 * 2**20,
    kind: str = "update",
    revoked: Collection[str] = (),
) -> tuple[dict[str, Any], bytes]:
    """Verify and decrypt an update sealed to `recipient`; return (header, payload) or raise SealError.

    `senders` maps each market to its public identity, or to a list of them (current and rotated-out keys in
    their grace period); `recipient` is one identity or a list (current and retired keys).
    Checks, in order: size, structure, magic/format, kind, revoked market, known market, signature (before any
    decryption), federation, round, parent model, decryption, plaintext length.
    """
    check_binding(federation, round, parent)
    if isinstance(envelope, (bytes, bytearray, memoryview)) and len(envelope) > max_bytes:
        raise SealError(f"oversized envelope: {len(envelope)} bytes exceeds the limit of {max_bytes}")
    header, header_bytes, ciphertext, body, signature = _parse(envelope)
    market = header["market"]
    if header["kind"] != kind:
        raise SealError(f"envelope from market '{market}' holds {header['kind']!r}, expected {kind!r}")
    if market in revoked:
        raise SealError(f"revoked market '{market}': its keys are no longer trusted by this federation")
    sender = senders.get(market)
    if sender is None or not _as_list(sender):
        raise SealError(f"unknown market '{market}': not among this federation's senders")
    if not _verifies(_as_list(sender), signature, body):
        raise SealError(f"invalid signature on update from market '{market}' (tampered or wrong key)")
    if header["federation"] != federation:
        raise SealError(
            f"update from market '{market}' is for federation '{header['federation']}', expected '{federation}'"
        )
    if header["round"] != round:
        raise SealError(
            f"update from market '{market}' is for round {header['round']}, expected {round} (stale or replayed)"
        )
    if header["parent"] != parent:
        raise SealError(
            f"update from market '{market}' started from parent model {header['parent'][:12] or '(none)'}, "
            f"expected {parent[:12]}: sealed in another run or from another model (stale or replayed)"
        )
    recipients = _as_list(recipient)
    for candidate in recipients:
        try:
            payload = _SUITE.decrypt(ciphertext, candidate.enc_private, info=header_bytes)
            break
        except InvalidTag:
            continue
    else:
        raise SealError(
            f"decryption failed for update from market '{market}' (not sealed to '{recipients[0].party}'?)"
        )
    if len(payload) != header["nbytes"]:
        raise SealError(
            f"update from market '{market}': plaintext is {len(payload)} bytes, header says {header['nbytes']}"
        )
    return header, payload


# --- global models -------------------------------------------------------------------------------


def sign_model(model_bytes: bytes, *, federation: str, round: int, signer: Identity,
               kind: str = "global-model") -> bytes:
    """Return a detached signature document (JSON bytes) for a global model (or, with another ``kind``, for
    another document the aggregator publishes, e.g. a secure-aggregation roster)."""
    check_binding(federation, round)
    fields = {
        "format": _FORMAT,
        "kind": kind,
        "federation": federation,
        "round": round,
        "sha256": sha256_hex(bytes(model_bytes)),
        "signer": signer.party,
    }
    signature = base64.b64encode(signer.sign_private.sign(_canonical(fields))).decode("ascii")
    return _canonical({**fields, "signature": signature})


def verify_model(
    model_bytes: bytes,
    signature_doc: bytes,
    *,
    federation: str,
    round: int,
    signer: PublicIdentity | Sequence[PublicIdentity],
    kind: str = "global-model",
) -> None:
    """Check a global model (or a document of another ``kind``) against its signature; raise SealError if not.

    `signer` is the aggregator's public identity, or a list of them (current and rotated-out keys in grace).
    """
    check_binding(federation, round)
    try:
        doc = json.loads(bytes(signature_doc).decode("utf-8"))
    except (TypeError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SealError(f"malformed model signature document: not UTF-8 JSON ({exc})") from None
    if not isinstance(doc, dict) or set(doc) != _MODEL_FIELDS | {"signature"}:
        raise SealError("malformed model signature document: wrong fields")
    if doc["format"] != _FORMAT or doc["kind"] != kind:
        raise SealError(f"unsupported model signature document (format {doc['format']!r}, kind {doc['kind']!r})")
    signers = _as_list(signer)
    party = signers[0].party
    if doc["signer"] != party:
        raise SealError(f"model signed by '{doc['signer']}', expected '{party}'")
    try:
        raw_sig = base64.b64decode(doc["signature"], validate=True)
    except (TypeError, binascii.Error):
        raise SealError(f"invalid signature on global model (signer '{party}'): not base64") from None
    if not _verifies(signers, raw_sig, _canonical({k: doc[k] for k in _MODEL_FIELDS})):
        raise SealError(f"invalid signature on global model (signer '{party}')")
    if doc["federation"] != federation:
        raise SealError(f"model signature is for federation '{doc['federation']}', expected '{federation}'")
    if doc["round"] != round:
        raise SealError(f"model signature is for round {doc['round']}, expected {round}")
    if doc["sha256"] != sha256_hex(bytes(model_bytes)):
        raise SealError("global model bytes do not match the signed sha256 (corrupted or substituted)")
