"""fedpipe.sealing: round trips, tampering in every region, and every rejection, with real keys."""

from __future__ import annotations

import base64
import json
import struct
from datetime import datetime

import pytest
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedpipe.errors import SealError
from fedpipe.keys import generate_identity, load_identity, parse_enc_public, parse_sign_public
from fedpipe.sealing import describe, open_update, seal_update, sha256_hex, sign_model, verify_model

FED = "turbofan"
PARENT = sha256_hex(b"global model of round 2")
PAYLOAD = b"xgboost-update:" + bytes(range(256)) * 4


@pytest.fixture(scope="module")
def parties(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    for p in ("aggregator", "FD001", "FD002", "FD003"):
        generate_identity(d, p)
    return {p: load_identity(d, p) for p in ("aggregator", "FD001", "FD002", "FD003")}


@pytest.fixture()
def agg(parties):
    return parties["aggregator"]


@pytest.fixture()
def senders(parties):
    return {m: parties[m].public for m in ("FD001", "FD002")}  # FD003 is not in this federation


def _seal(parties, payload=PAYLOAD, market="FD001", **kw):
    args = dict(federation=FED, round=3, market=market, parent=PARENT,
                recipient=parties["aggregator"].public, signer=parties[market])
    args.update(kw)
    return seal_update(payload, **args)


def _open(env, parties, senders, **kw):
    args = dict(federation=FED, round=3, parent=PARENT, senders=senders, recipient=parties["aggregator"])
    args.update(kw)
    return open_update(env, **args)


def _split(env: bytes) -> dict[str, tuple[int, int]]:
    """Byte ranges [start, end) of each region, parsed straight from the documented format."""
    (hlen,) = struct.unpack(">I", env[8:12])
    (clen,) = struct.unpack(">I", env[12 + hlen : 16 + hlen])
    return {
        "magic": (0, 8),
        "header length": (8, 12),
        "header": (12, 12 + hlen),
        "ct length": (12 + hlen, 16 + hlen),
        "ciphertext": (16 + hlen, 16 + hlen + clen),
        "signature": (16 + hlen + clen, len(env)),
    }


def _build(header: dict, payload: bytes, signer, recipient_pub, *, info: bytes | None = None) -> bytes:
    """An envelope made independently of fedpipe.sealing, from the documented format."""
    hb = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    suite = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)
    ct = suite.encrypt(payload, parse_enc_public(recipient_pub.enc_public), info=hb if info is None else info)
    body = b"FPSEAL1\n" + struct.pack(">I", len(hb)) + hb + struct.pack(">I", len(ct)) + ct
    return body + signer.sign_private.sign(body)


def _header(**kw) -> dict:
    h = dict(format=1, kind="update", federation=FED, round=3, market="FD001", parent=PARENT,
             created="2025-01-01T00:00:00Z", nbytes=len(PAYLOAD))
    h.update(kw)
    return h


# --- round trips -----------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [PAYLOAD, b"", b"\x00", bytes(100_000)])
def test_round_trip(parties, senders, payload):
    env = _seal(parties, payload)
    header, out = _open(env, parties, senders)
    assert out == payload
    assert header["market"] == "FD001" and header["round"] == 3 and header["federation"] == FED
    assert header["parent"] == PARENT and header["nbytes"] == len(payload) and header["format"] == 1
    assert header["kind"] == "update"
    assert datetime.strptime(header["created"], "%Y-%m-%dT%H:%M:%SZ")


def test_non_ascii_federation_round_trip(parties, senders):
    env = _seal(parties, federation="flotte-é-✈")
    assert _open(env, parties, senders, federation="flotte-é-✈")[0]["federation"] == "flotte-é-✈"
    doc = sign_model(b"m", federation="flotte-é-✈", round=1, signer=parties["aggregator"])
    verify_model(b"m", doc, federation="flotte-é-✈", round=1, signer=parties["aggregator"].public)


def test_first_round_names_the_runs_genesis_never_an_empty_parent(parties, senders):
    genesis = sha256_hex(b'{"federation": "turbofan", "nonce": "...", "run_id": "run-a"}')
    assert _open(_seal(parties, round=1, parent=genesis), parties, senders, round=1, parent=genesis)[1] == PAYLOAD
    # "" would be the same in every run: a first-round envelope could be replayed into a later run
    with pytest.raises(ValueError, match="sha256.*genesis"):
        _seal(parties, round=1, parent="")
    with pytest.raises(ValueError, match="sha256.*genesis"):
        _open(_seal(parties, round=1, parent=genesis), parties, senders, round=1, parent="")


def test_envelope_matches_documented_format(parties):
    env = _seal(parties)
    r = _split(env)
    assert env[:8] == b"FPSEAL1\n"
    assert r["signature"][1] - r["signature"][0] == 64
    hb = env[slice(*r["header"])]
    assert hb == json.dumps(json.loads(hb), sort_keys=True, separators=(",", ":")).encode()
    # the signature is over every byte before it
    parse_sign_public(parties["FD001"].public.sign_public).verify(env[-64:], env[:-64])


def test_independently_built_envelope_opens(parties, senders):
    env = _build(_header(), PAYLOAD, parties["FD001"], parties["aggregator"].public)
    assert _open(env, parties, senders)[1] == PAYLOAD


def test_describe_reads_header_without_keys(parties):
    env = _seal(parties)
    h = describe(env)
    assert h["market"] == "FD001" and h["round"] == 3 and h["nbytes"] == len(PAYLOAD)
    with pytest.raises(SealError):
        describe(env[:20])
    with pytest.raises(SealError):
        describe(b"garbage")


def test_sealing_twice_differs(parties, senders):
    a, b = _seal(parties), _seal(parties)
    assert a != b
    assert _open(a, parties, senders)[1] == _open(b, parties, senders)[1] == PAYLOAD


def test_envelope_hides_plaintext(parties):
    payload = b"SECRET-MARKET-DATA-" * 20
    env = _seal(parties, payload)
    assert payload not in env
    assert b"SECRET-MARKET-DATA-" not in env


# --- tampering -------------------------------------------------------------------------------------


@pytest.mark.parametrize("region", ["magic", "header length", "header", "ct length", "ciphertext", "signature"])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_flipping_a_byte_in_any_region_is_rejected(parties, senders, region, where):
    env = _seal(parties)
    start, end = _split(env)[region]
    i = {"first": start, "middle": (start + end) // 2, "last": end - 1}[where]
    for bit in (0x01, 0x80):
        tampered = bytearray(env)
        tampered[i] ^= bit
        with pytest.raises(SealError):
            _open(bytes(tampered), parties, senders)


def test_every_single_byte_flip_is_rejected(parties, senders):
    env = _seal(parties, b"tiny")
    for i in range(len(env)):
        tampered = bytearray(env)
        tampered[i] ^= 0x04
        with pytest.raises(SealError):
            _open(bytes(tampered), parties, senders)


def test_tampered_header_is_a_signature_failure(parties, senders):
    env = _seal(parties)
    forged = env.replace(b'"round":3', b'"round":4')
    assert len(forged) == len(env)
    with pytest.raises(SealError, match="invalid signature.*FD001"):
        _open(forged, parties, senders, round=4)


# --- rejections ------------------------------------------------------------------------------------


def test_unknown_market(parties, senders):
    env = _seal(parties, market="FD003")
    with pytest.raises(SealError, match="unknown market 'FD003'"):
        _open(env, parties, senders)


def test_signature_by_another_markets_key(parties, senders):
    # FD002 forges an update claiming to come from FD001
    env = _build(_header(market="FD001"), PAYLOAD, parties["FD002"], parties["aggregator"].public)
    with pytest.raises(SealError, match="invalid signature.*'FD001'"):
        _open(env, parties, senders)


def test_wrong_federation(parties, senders):
    env = _seal(parties, federation="other-fleet")
    with pytest.raises(SealError, match="FD001.*federation 'other-fleet', expected 'turbofan'"):
        _open(env, parties, senders)


@pytest.mark.parametrize("sealed_round", [2, 4])
def test_wrong_round_stale_or_replayed(parties, senders, sealed_round):
    env = _seal(parties, round=sealed_round)
    with pytest.raises(SealError, match=rf"FD001.*round {sealed_round}, expected 3 \(stale or replayed\)"):
        _open(env, parties, senders)


def test_wrong_parent(parties, senders):
    env = _seal(parties, parent=sha256_hex(b"some other model"))
    with pytest.raises(SealError, match="FD001.*parent model.*another run or from another model"):
        _open(env, parties, senders)


def test_not_sealed_to_this_recipient(parties, senders):
    env = _seal(parties, recipient=parties["FD002"].public)
    with pytest.raises(SealError, match="decryption failed.*FD001"):
        _open(env, parties, senders)


def test_ciphertext_not_bound_to_header_fails_decryption(parties, senders):
    # validly signed, but the HPKE info is not the header: the ciphertext was made for another context
    env = _build(_header(), PAYLOAD, parties["FD001"], parties["aggregator"].public, info=b"something else")
    with pytest.raises(SealError, match="decryption failed"):
        _open(env, parties, senders)


def test_plaintext_length_mismatch(parties, senders):
    env = _build(_header(nbytes=len(PAYLOAD) + 1), PAYLOAD, parties["FD001"], parties["aggregator"].public)
    with pytest.raises(SealError, match=r"FD001.*plaintext is \d+ bytes, header says \d+"):
        _open(env, parties, senders)


@pytest.mark.parametrize("cut", [0, 1, 8, 11, 12, 40, -65, -64, -1])
def test_truncated(parties, senders, cut):
    env = _seal(parties)
    with pytest.raises(SealError, match="truncated"):
        _open(env[:cut], parties, senders)


def test_trailing_bytes_rejected(parties, senders):
    with pytest.raises(SealError, match="malformed"):
        _open(_seal(parties) + b"\x00", parties, senders)


def test_oversized(parties, senders):
    env = _seal(parties)
    with pytest.raises(SealError, match=f"oversized.*{len(env)} bytes.*limit of {len(env) - 1}"):
        _open(env, parties, senders, max_bytes=len(env) - 1)
    assert _open(env, parties, senders, max_bytes=len(env))[1] == PAYLOAD


def test_bad_magic(parties, senders):
    env = _seal(parties)
    with pytest.raises(SealError, match="bad magic"):
        _open(b"FPSEAL2\n" + env[8:], parties, senders)


@pytest.mark.parametrize("blob", [b"junk" * 10, b"PK\x03\x04" + bytes(100)])
def test_not_an_envelope_is_bad_magic(parties, senders, blob):
    with pytest.raises(SealError, match="bad magic"):
        _open(blob, parties, senders)


def test_unsupported_format_version(parties, senders):
    env = _build(_header(format=2), PAYLOAD, parties["FD001"], parties["aggregator"].public)
    with pytest.raises(SealError, match="unsupported format version 2"):
        _open(env, parties, senders)


@pytest.mark.parametrize(
    "header",
    [
        _header(kind="model"),
        _header(round="3"),
        _header(round=True),
        {k: v for k, v in _header().items() if k != "parent"},
        {**_header(), "extra": 1},
    ],
)
def test_malformed_header(parties, senders, header):
    env = _build(header, PAYLOAD, parties["FD001"], parties["aggregator"].public)
    with pytest.raises(SealError):
        _open(env, parties, senders)


def test_non_json_header(parties, senders):
    hb = b"\xff not json"
    body = b"FPSEAL1\n" + struct.pack(">I", len(hb)) + hb + struct.pack(">I", 0)
    env = body + parties["FD001"].sign_private.sign(body)
    with pytest.raises(SealError, match="malformed header"):
        _open(env, parties, senders)


def test_not_bytes(parties, senders):
    with pytest.raises(SealError):
        _open("FPSEAL1\n", parties, senders)


def test_seal_requires_signer_to_be_the_market(parties):
    with pytest.raises(ValueError, match="own identity"):
        _seal(parties, market="FD001", signer=parties["FD002"])


@pytest.mark.parametrize("kw", [{"round": -1}, {"round": True}, {"parent": "abc"}, {"parent": ""},
                                {"parent": PARENT.upper()}, {"federation": ""}])
def test_seal_rejects_bad_arguments(parties, kw):
    with pytest.raises(ValueError):
        _seal(parties, **kw)


# --- global models ---------------------------------------------------------------------------------

MODEL = b'{"learner": "xgboost", "trees": [1, 2, 3]}'


def test_sign_verify_model_round_trip(parties):
    doc = sign_model(MODEL, federation=FED, round=3, signer=parties["aggregator"])
    verify_model(MODEL, doc, federation=FED, round=3, signer=parties["aggregator"].public)
    fields = json.loads(doc)
    assert fields["sha256"] == sha256_hex(MODEL)
    assert fields["signer"] == "aggregator" and fields["round"] == 3 and fields["federation"] == FED
    assert len(base64.b64decode(fields["signature"], validate=True)) == 64
    verify_model(b"", sign_model(b"", federation=FED, round=0, signer=parties["aggregator"]),
                 federation=FED, round=0, signer=parties["aggregator"].public)


@pytest.fixture()
def model_doc(parties):
    return sign_model(MODEL, federation=FED, round=3, signer=parties["aggregator"])


def test_verify_model_rejects_changed_model(parties, model_doc):
    with pytest.raises(SealError, match="sha256"):
        verify_model(MODEL + b" ", model_doc, federation=FED, round=3, signer=parties["aggregator"].public)


def test_verify_model_rejects_wrong_federation(parties, model_doc):
    with pytest.raises(SealError, match="federation"):
        verify_model(MODEL, model_doc, federation="other", round=3, signer=parties["aggregator"].public)


def test_verify_model_rejects_wrong_round(parties, model_doc):
    with pytest.raises(SealError, match="round 3, expected 4"):
        verify_model(MODEL, model_doc, federation=FED, round=4, signer=parties["aggregator"].public)


def test_verify_model_rejects_other_signer(parties, model_doc):
    with pytest.raises(SealError, match="signed by 'aggregator', expected 'FD001'"):
        verify_model(MODEL, model_doc, federation=FED, round=3, signer=parties["FD001"].public)


def test_verify_model_rejects_forged_signature(parties):
    # FD001 signs a document claiming to be from the aggregator
    doc = json.loads(sign_model(MODEL, federation=FED, round=3, signer=parties["FD001"]))
    doc["signer"] = "aggregator"
    with pytest.raises(SealError, match="invalid signature"):
        verify_model(MODEL, json.dumps(doc).encode(), federation=FED, round=3, signer=parties["aggregator"].public)


@pytest.mark.parametrize("field,value", [("round", 4), ("federation", "x"), ("sha256", "0" * 64)])
def test_verify_model_rejects_edited_fields(parties, model_doc, field, value):
    doc = json.loads(model_doc)
    doc[field] = value
    kw = {"federation": doc["federation"], "round": doc["round"]}
    with pytest.raises(SealError, match="invalid signature"):
        verify_model(MODEL, json.dumps(doc).encode(), signer=parties["aggregator"].public, **kw)


@pytest.mark.parametrize("doc", [b"", b"not json", b"[]", b'{"signature": "x"}', "\xff".encode("latin-1")])
def test_verify_model_rejects_malformed_doc(parties, doc):
    with pytest.raises(SealError, match="malformed"):
        verify_model(MODEL, doc, federation=FED, round=3, signer=parties["aggregator"].public)


def test_verify_model_rejects_bad_signature_encoding(parties, model_doc):
    doc = json.loads(model_doc)
    doc["signature"] = "***"
    with pytest.raises(SealError, match="invalid signature"):
        verify_model(MODEL, json.dumps(doc).encode(), federation=FED, round=3, signer=parties["aggregator"].public)


def test_model_signature_cannot_open_as_update(parties, senders, model_doc):
    with pytest.raises(SealError):
        _open(model_doc, parties, senders)


# --- properties ------------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.binary(max_size=2048), data=st.data())
def test_property_round_trip_and_any_flip_rejected(parties, senders, payload, data):
    env = _seal(parties, payload)
    assert _open(env, parties, senders)[1] == payload
    i = data.draw(st.integers(0, len(env) - 1), label="byte")
    bit = data.draw(st.sampled_from([1, 2, 4, 8, 16, 32, 64, 128]), label="bit")
    tampered = bytearray(env)
    tampered[i] ^= bit
    with pytest.raises(SealError):
        _open(bytes(tampered), parties, senders)


# --- revocation and key rotation -------------------------------------------------------------------


def test_revoked_market_is_refused_even_with_a_valid_signature(parties, senders):
    env = _seal(parties)
    with pytest.raises(SealError, match="revoked market 'FD001'"):
        _open(env, parties, senders, revoked={"FD001"})
    assert _open(env, parties, senders, revoked={"FD002"})[1] == PAYLOAD


def test_sender_trusted_under_several_keys(parties, senders, tmp_path):
    from datetime import timedelta

    from fedpipe.keys import rotate_identity, verification_keys

    generate_identity(tmp_path, "FD001")
    before = load_identity(tmp_path, "FD001")
    rotate_identity(tmp_path, "FD001", grace=timedelta(days=1))
    after = load_identity(tmp_path, "FD001")
    trusted = {**senders, "FD001": verification_keys(tmp_path, "FD001")}
    for signer in (before, after):  # sealed just before and just after the rotation: both open in the grace period
        env = _seal(parties, signer=signer)
        assert _open(env, parties, trusted)[1] == PAYLOAD
    only_new = {**senders, "FD001": [after.public]}
    with pytest.raises(SealError, match="invalid signature.*FD001"):
        _open(_seal(parties, signer=before), parties, only_new)
    with pytest.raises(SealError, match="unknown market 'FD001'"):
        _open(_seal(parties, signer=after), parties, {**senders, "FD001": []})


def test_recipient_with_retired_key_still_opens(parties, senders, tmp_path):
    generate_identity(tmp_path, "aggregator")
    old_agg = load_identity(tmp_path, "aggregator")
    env = _seal(parties, recipient=old_agg.public)
    assert _open(env, parties, senders, recipient=[parties["aggregator"], old_agg])[1] == PAYLOAD
    with pytest.raises(SealError, match="decryption failed"):
        _open(env, parties, senders, recipient=[parties["aggregator"]])


def test_model_verifies_against_any_trusted_aggregator_key(parties, tmp_path):
    generate_identity(tmp_path, "aggregator")
    old_agg = load_identity(tmp_path, "aggregator")
    doc = sign_model(MODEL, federation=FED, round=3, signer=old_agg)
    verify_model(MODEL, doc, federation=FED, round=3, signer=[parties["aggregator"].public, old_agg.public])
    with pytest.raises(SealError, match="invalid signature on global model"):
        verify_model(MODEL, doc, federation=FED, round=3, signer=[parties["aggregator"].public])


def test_metrics_cannot_pass_as_update(parties, senders):
    env = _seal(parties, kind="metrics")
    with pytest.raises(SealError, match="holds 'metrics', expected 'update'"):
        _open(env, parties, senders)
