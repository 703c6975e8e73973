"""fedpipe.secagg: pairwise-masked sums with real X25519 keys, dropout recovery, and the refusals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedpipe.errors import FedpipeError
from fedpipe.keys import generate_identity, load_identity
from fedpipe.secagg import (
    FRAC_BITS,
    MIN_PARTIES,
    FixedPointRangeError,
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
    # on its own, a masked vector is noise spread over the whole 64-bit range (out of range for decode)
    assert np.abs(masked.view(np.int64).astype(np.float64)).max() > 2.0**62
    with pytest.raises(FixedPointRangeError, match="out of the fixed-point range"):
        decode(masked)
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
    values = {m: [1.0, 2.0] * 32 for m in names}
    masked = _mask_all(ids, values)
    masked["FD003"] = _mask_all(ids, values, round=3)["FD003"]  # a replayed vector from another round
    # the leftover masks are uniform over 2^64: out of range in some word (all 64 in range: 2^-64), so refused
    with pytest.raises(FixedPointRangeError, match="masks that should have cancelled did not"):
        unmask_sum(masked, roster=names)


def test_encode_refuses_values_whose_sum_over_the_roster_could_wrap(ids):
    """Each value must stay below 2^62 / (n * 2^16), n the markets summed, so the ring's total cannot wrap."""
    limit = 2.0**62 / 2**FRAC_BITS  # one market
    assert decode(encode([limit * 0.99])) == pytest.approx([limit * 0.99])
    with pytest.raises(FixedPointRangeError, match=r"value #1 = .*summed over 4 market\(s\).*below 1\.759\d*e\+13"):
        encode([1.0, limit / 4], parties=4)
    with pytest.raises(ValueError, match="'fed.cost' = .*too large"):  # also a ValueError, naming the field
        encode([0.0, -limit / 3], parties=3, fields=["fed.n", "fed.cost"])
    assert issubclass(FixedPointRangeError, SecAggError)
    # mask_vector passes the roster's size: a value three markets could not sum without wrapping is refused
    names = ["FD001", "FD002", "FD003"]
    with pytest.raises(FixedPointRangeError, match="'savings'.*summed over 3 market"):
        mask_vector([1.0, limit / 2], me=ids["FD001"], roster=_roster(ids, names), fields=["n", "savings"], **CTX)
    big = {m: [limit / 3 * 0.999, -limit / 3 * 0.999] for m in names}  # just inside: the sum comes out right
    assert unmask_sum(_mask_all(ids, big), roster=names) == pytest.approx([limit * 0.999, -limit * 0.999])


def test_decode_refuses_a_total_that_wrapped():
    """Three values each fine alone (one party) but summed past 2^62: the total is refused, not returned wrong."""
    limit = 2.0**62 / 2**FRAC_BITS
    with np.errstate(over="ignore"):
        total = sum((encode([limit * 0.9]) for _ in range(3)), np.zeros(1, dtype=np.uint64))
    with pytest.raises(FixedPointRangeError, match="total 0 of 1 is out of the fixed-point range.*wrapped"):
        decode(total)
    with pytest.raises(FixedPointRangeError):
        decode(np.array([2**62], dtype=np.uint64))  # the boundary itself
    assert decode(np.array([2**62 - 1], dtype=np.uint64))[0] == pytest.approx(limit)
    assert decode(encode([-limit * 0.99])) == pytest.approx([-limit * 0.99])


def test_reveal_refused_outside_the_roster_and_only_for_missing_roster_markets(ids):
    names = ["FD001", "FD002", "FD003", "FD004"]
    with pytest.raises(SecAggError, match="'FD005' is asked to reveal seeds but is not in the roster"):
        reveal_seeds(me=ids["FD005"], roster=_roster(ids, names), survivors=[*names[:3], "FD005"], **CTX)
    with pytest.raises(SecAggError, match=r"survivors \['FD005'\] are not in the roster"):
        reveal_seeds(me=ids["FD001"], roster=_roster(ids, names), survivors=[*names[:3], "FD005"], **CTX)
    seeds = reveal_seeds(me=ids["FD001"], roster=_roster(ids, names), survivors=names[:3], **CTX)
    assert set(seeds) == {"FD004"}  # never its own, never a market outside the roster
    with pytest.raises(SecAggError, match="cannot pair with itself"):
        pair_seed(ids["FD001"], ids["FD001"].public, **CTX)


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
