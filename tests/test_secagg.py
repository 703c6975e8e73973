"""fedpipe.secagg: pairwise-masked sums with real X25519 keys, dropout recovery, and the refusals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedpipe.errors import FedpipeError
from fedpipe.keys import generate_identity, load_identity
from fedpipe.secagg import (
    MIN_PARTIES,
    SecAggError,
    decode,
    encode,
    from_wire,
    mask_vector,
    pair_seed,
    reveal_seeds,
    to_wire,
    unmask_sum,
)

MARKETS = ("FD001", "FD002", "FD003", "FD004", "FD005")
CTX = dict(federation="turbofan", round=2, label="roi")


@pytest.fixture(scope="module")
def ids(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    for m in MARKETS:
        generate_identity(d, m)
    return {m: load_identity(d, m) for m in MARKETS}


def _roster(ids, names):
    return {m: ids[m].public for m in names}


def _mask_all(ids, values: dict[str, list[float]], names=None, **ctx):
    names = list(names or values)
    roster = _roster(ids, names)
    ctx = {**CTX, **ctx}
    return {m: mask_vector(values[m], me=ids[m], roster=roster, **ctx) for m in values}


def test_encode_decode_round_trip():
    x = np.array([0.0, 1.5, -2.25, 1e9, -3e7, 1 / 3])
    assert decode(encode(x)) == pytest.approx(x, abs=2**-16)
    assert encode([-1.0]).dtype == np.uint64 and int(encode([-1.0])[0]) == 2**64 - 2**16
    with pytest.raises(SecAggError, match="too large"):
        encode([1e15])
    with pytest.raises(SecAggError, match="NaN"):
        encode([float("nan")])


def test_both_ends_derive_the_same_seed_bound_to_context(ids):
    a, b = ids["FD001"], ids["FD002"]
    s = pair_seed(a, b.public, **CTX)
    assert s == pair_seed(b, a.public, **CTX) and len(s) == 32
    assert s != pair_seed(a, b.public, **{**CTX, "round": 3})
    assert s != pair_seed(a, b.public, **{**CTX, "label": "weights"})
    assert s != pair_seed(a, b.public, **{**CTX, "federation": "other"})
    assert s != pair_seed(a, ids["FD003"].public, **CTX)


def test_masked_sum_is_the_plain_sum(ids):
    values = {"FD001": [1.0, 250000.0, -40000.5], "FD002": [0.0, 7.25, 3.0], "FD003": [5.0, -1.0, 1e8]}
    masked = _mask_all(ids, values)
    total = unmask_sum(masked, roster=list(values))
    assert total == pytest.approx(np.sum(list(values.values()), axis=0), abs=1e-4)


def test_a_masked_vector_looks_nothing_like_its_plaintext(ids):
    values = {m: [float(i) for i in range(64)] for m in ("FD001", "FD002", "FD003")}
    masked = _mask_all(ids, values)["FD001"]
    plain = encode(values["FD001"])
    assert not np.any(masked == plain)
    # decoded on its own, a masked vector is noise spread over the whole 64-bit range
    assert np.abs(decode(masked)).max() > 1e9
    bits = np.unpackbits(masked.view(np.uint8))
    assert 0.45 < bits.mean() < 0.55


def test_two_markets_refuse_with_a_clear_message(ids):
    roster = _roster(ids, ["FD001", "FD002"])
    with pytest.raises(SecAggError, match="at least 3 markets.*2.*each could deduce the other's part"):
        mask_vector([1.0], me=ids["FD001"], roster=roster, **CTX)
    assert MIN_PARTIES == 3 and issubclass(SecAggError, FedpipeError)


def test_not_in_roster(ids):
    with pytest.raises(SecAggError, match="not in the roster"):
        mask_vector([1.0], me=ids["FD004"], roster=_roster(ids, ["FD001", "FD002", "FD003"]), **CTX)


def test_dropout_recovered_by_survivors_revealing_seeds(ids):
    names = ["FD001", "FD002", "FD003", "FD004"]
    values = {m: [float(i + 1), 10.0 * (i + 1)] for i, m in enumerate(names)}
    masked = _mask_all(ids, values)
    del masked["FD003"]  # masked, then never delivered
    survivors = sorted(masked)
    # without the survivors' reveals the sum is garbage and is refused
    with pytest.raises(SecAggError, match="'FD003' dropped out.*has not revealed"):
        unmask_sum(masked, roster=names)
    revealed = {s: reveal_seeds(me=ids[s], roster=_roster(ids, names), survivors=survivors, **CTX)
                for s in survivors}
    assert all(set(r) == {"FD003"} for r in revealed.values())
    total = unmask_sum(masked, roster=names, revealed=revealed)
    assert total == pytest.approx([1 + 2 + 4, 10 + 20 + 40], abs=1e-4)


def test_dropout_leaving_two_survivors_is_refused(ids):
    names = ["FD001", "FD002", "FD003"]
    with pytest.raises(SecAggError, match="survivors' set has 2"):
        reveal_seeds(me=ids["FD001"], roster=_roster(ids, names), survivors=["FD001", "FD002"], **CTX)
    masked = _mask_all(ids, {m: [1.0] for m in names})
    del masked["FD003"]
    with pytest.raises(SecAggError, match="delivered vectors has 2"):
        unmask_sum(masked, roster=names)


def test_reveal_refused_to_a_non_survivor(ids):
    names = ["FD001", "FD002", "FD003", "FD004"]
    with pytest.raises(SecAggError, match="not listed among the survivors"):
        reveal_seeds(me=ids["FD004"], roster=_roster(ids, names), survivors=names[:3], **CTX)


def test_masks_from_another_round_do_not_cancel(ids):
    names = ["FD001", "FD002", "FD003"]
    values = {m: [1.0, 2.0] for m in names}
    masked = _mask_all(ids, values)
    masked["FD003"] = _mask_all(ids, values, round=3)["FD003"]  # a replayed vector from another round
    assert not np.allclose(unmask_sum(masked, roster=names), [3.0, 6.0])


def test_malformed_inputs(ids):
    names = ["FD001", "FD002", "FD003"]
    masked = _mask_all(ids, {m: [1.0, 2.0] for m in names})
    with pytest.raises(SecAggError, match="outside the roster"):
        unmask_sum({**masked, "FD005": masked["FD001"]}, roster=names)
    with pytest.raises(SecAggError, match="differ in length"):
        unmask_sum({**masked, "FD003": masked["FD003"][:1]}, roster=names)
    with pytest.raises(SecAggError, match="8-byte words"):
        from_wire("AAAA")
    with pytest.raises(SecAggError, match="base64"):
        from_wire("%%")


def test_wire_round_trip(ids):
    v = _mask_all(ids, {m: [1.0, -2.0, 3.5] for m in ("FD001", "FD002", "FD003")})["FD002"]
    assert np.array_equal(from_wire(to_wire(v)), v)


finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), n_markets=st.integers(MIN_PARTIES, len(MARKETS)), length=st.integers(1, 20),
       round_=st.integers(0, 10**6))
def test_property_masked_sum_equals_plain_sum(ids, data, n_markets, length, round_):
    names = list(MARKETS[:n_markets])
    values = {m: data.draw(st.lists(finite, min_size=length, max_size=length), label=m) for m in names}
    masked = _mask_all(ids, values, round=round_)
    for m in names:  # a masked word equals its plaintext word with probability 2^-64
        assert not np.any(masked[m] == encode(values[m]))
    total = unmask_sum(masked, roster=names)
    # exactly the fixed-point sum, and so the float sum to within the encoding's resolution
    with np.errstate(over="ignore"):
        fixed = sum((encode(values[m]) for m in names), np.zeros(length, dtype=np.uint64))
    assert np.array_equal(encode(total), fixed)
    assert total == pytest.approx(np.sum([values[m] for m in names], axis=0), abs=n_markets * 2**-16)
