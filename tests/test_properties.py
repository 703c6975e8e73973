"""Property-based tests: whatever the input, the federation loader raises only ConfigError and the envelope
parser only SealError (never a KeyError, TypeError, struct.error, ... that would crash a round)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedpipe.config import load_federation
from fedpipe.errors import ConfigError, SealError
from fedpipe.keys import generate_identity, load_identity
from fedpipe.sealing import open_update, seal_update, sha256_hex

REPO = Path(__file__).resolve().parents[1]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# --- the federation loader --------------------------------------------------------------------------------------

scalars = st.one_of(st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=True),
                    st.text(max_size=20), st.dates())
keys_ = st.text(min_size=1, max_size=12)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(keys_, inner, max_size=3)), max_leaves=8)
SECTION_NAMES = st.sampled_from(["federation", "model", "usecase", "roi", "markets", "screening", "registry", "x"])
FIELD_NAMES = st.sampled_from(["name", "usecase", "rounds", "trees_per_round", "quorum", "strategy", "seed",
                               "market_timeout_s", "runs_dir", "keys_dir", "data", "subsample", "state",
                               "threshold", "max_update_mb", "holdout_check", "max_loss_increase", "FD001"])


def _valid() -> dict:
    return {
        "federation": {"name": "prop", "usecase": "predictive_maintenance", "quorum": 1},
        "markets": {"FD001": {"data": "../usecases/predictive_maintenance/data/FD001"}},
    }


def _load(tmp_path: Path, text: str | bytes):
    path = tmp_path / "federations" / "prop.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return load_federation(path)


@SETTINGS
@given(doc=st.dictionaries(SECTION_NAMES, st.one_of(values, st.dictionaries(FIELD_NAMES, values, max_size=5)),
                           max_size=5))
def test_random_documents_load_or_raise_config_error(tmp_path, doc):
    try:
        _load(tmp_path, tomli_w.dumps(doc))
    except ConfigError:
        pass


@SETTINGS
@given(section=st.sampled_from(["federation", "screening", "roi", "market"]), field=FIELD_NAMES, value=values)
def test_one_bad_field_in_a_valid_document_loads_or_names_a_field(tmp_path, section, field, value):
    doc = _valid()
    target = doc["markets"]["FD001"] if section == "market" else doc.setdefault(section, {})
    target[field] = value
    try:
        _load(tmp_path, tomli_w.dumps(doc))
    except ConfigError as exc:
        assert exc.field and str(exc.file).endswith("prop.toml")


@SETTINGS
@given(blob=st.binary(max_size=300))
def test_random_bytes_raise_config_error(tmp_path, blob):
    try:
        _load(tmp_path, blob)
    except ConfigError:
        pass


# --- the envelope parser ----------------------------------------------------------------------------------------

PARENT = sha256_hex(b"parent")


@pytest.fixture(scope="module")
def parties(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    for party in ("aggregator", "FD001"):
        generate_identity(folder, party)
    return {party: load_identity(folder, party) for party in ("aggregator", "FD001")}


@pytest.fixture(scope="module")
def envelope(parties):
    return seal_update(b'{"model": {}, "n_rows": 1}', federation="prop", round=2, market="FD001", parent=PARENT,
                       recipient=parties["aggregator"].public, signer=parties["FD001"])


def _open(blob: bytes, parties) -> None:
    open_update(blob, federation="prop", round=2, parent=PARENT, senders={"FD001": parties["FD001"].public},
                recipient=parties["aggregator"], max_bytes=1 << 16)


def test_the_valid_envelope_opens(parties, envelope):
    _open(envelope, parties)  # the mutations below start from an envelope that really opens


@SETTINGS
@given(blob=st.one_of(st.binary(max_size=400), st.binary(max_size=400).map(lambda b: b"FPSEAL1\n" + b)))
def test_random_bytes_raise_only_seal_error(parties, blob):
    with pytest.raises(SealError):
        _open(blob, parties)


mutations = st.one_of(
    st.tuples(st.just("replace"), st.integers(0, 10_000), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 10_000), st.integers(1, 64)),
    st.tuples(st.just("header length"), st.just(8), st.integers(0, 2**32 - 1)),
    st.tuples(st.just("truncate"), st.integers(0, 10_000), st.just(0)),
)


def _mutate(env: bytes, how: str, at: int, what) -> bytes:
    at %= max(len(env), 1)
    if how == "replace":
        return env[:at] + what + env[at + len(what):]
    if how == "insert":
        return env[:at] + what + env[at:]
    if how == "delete":
        return env[:at] + env[at + what:]
    if how == "header length":
        return env[:8] + struct.pack(">I", what) + env[12:]
    return env[:at]


@SETTINGS
@given(steps=st.lists(mutations, min_size=1, max_size=3))
def test_mutated_envelopes_raise_only_seal_error(parties, envelope, steps):
    blob = envelope
    for step in steps:
        blob = _mutate(blob, *step)
    if blob == envelope:  # a replace that wrote the same bytes back
        _open(blob, parties)
        return
    with pytest.raises(SealError):
        _open(blob, parties)
