"""Secure aggregation by pairwise masking (Bonawitz et al., CCS 2017): the centre learns only totals.

Every pair of markets (i, j) in a round's roster agrees a seed without exchanging a message: both ends compute the
same X25519 shared secret (i's private key with j's public key, or j's with i's) and derive the seed from it with
HKDF-SHA256, bound to federation, round, purpose ("label") and the pair. The seed keys AES-256-CTR; its keystream,
read as little-endian uint64 words, is the pair's mask. Market i encodes its values as fixed-point integers mod 2^64
and adds the mask of every peer that sorts after it and subtracts the mask of every peer that sorts before it. Over
the whole roster every mask is added once and subtracted once, so the sum of the masked vectors is the sum of the
values, while a single masked vector is uniformly random to anyone without i's seeds.

Dropout after masking: a market that masked but never delivered leaves its pairwise masks in the survivors' sum.
Each survivor then reveals its seed with the dropped market (`reveal_seeds`), and `unmask_sum` removes those masks.
A revealed seed opens nothing of the survivor's: it only describes the pair with a market whose value is not in the
sum. (Bonawitz's double masking, which also protects a market whose vector arrives *after* it was declared dropped,
is not implemented: see SECURITY.md.)

A market whose masked vector reached the centre is never recovered like a dropout, even if the centre then rejects
it: the survivors' seeds with it would unmask it (fedpipe.secure_round.reveal_request refuses to ask for them).

Fixed point and wrap-around: every sum is taken mod 2^64, so a total whose true value leaves the signed range would
wrap silently. `encode` refuses a value above 2^62 / (parties * 2^FRAC_BITS) in magnitude (`mask_vector` passes the
roster's size), so the sum of the whole roster stays below 2^62; `decode` refuses a total at or beyond 2^62, which
is what a wrapped sum or a vector whose masks did not cancel (e.g. masked under another session) looks like.

Fewer than three markets is refused: with two, each could subtract its own part from the total and read the other's.

API::

    masked = mask_vector(values, me=identity, roster=public_ids, federation=..., round=..., label="roi")
    seeds = reveal_seeds(me=identity, roster=public_ids, survivors=[...], federation=..., round=..., label="roi")
    totals = unmask_sum({market: masked, ...}, roster=[...], revealed={survivor: seeds, ...}, federation=..., ...)

`to_wire`/`from_wire` turn a masked vector into base64 text for a JSON payload and back.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedpipe.errors import FedpipeError
from fedpipe.keys import Identity, PublicIdentity, parse_enc_public

__all__ = [
    "FRAC_BITS",
    "MIN_PARTIES",
    "FixedPointRangeError",
    "SecAggError",
    "decode",
    "encode",
    "from_wire",
    "mask_vector",
    "pair_seed",
    "reveal_seeds",
    "to_wire",
    "unmask_sum",
]

MIN_PARTIES = 3
FRAC_BITS = 16  # fixed point: 1/65536 resolution, |value| below 2^46 / n ≈ 7e13 / n per market (n summed)
_LIMIT = 2**62  # keep every plain total clear of the int64 sign boundary: a sum never wraps undetected
_INFO = b"fedpipe-secagg-v1"


class SecAggError(FedpipeError):
    """Secure aggregation cannot go on: too few markets, a missing reveal, a malformed masked vector."""


class FixedPointRangeError(SecAggError, ValueError):
    """A value too large for the fixed-point ring, or a total out of its range (also a ValueError)."""


# --- fixed-point encoding ------------------------------------------------------------------------


def _name(i: int, fields: Sequence[str] | None) -> str:
    return f"'{fields[i]}'" if fields is not None and i < len(fields) else f"#{i}"


def encode(values, frac_bits: int = FRAC_BITS, *, parties: int = 1,
           fields: Sequence[str] | None = None) -> np.ndarray:
    """Floats to fixed-point integers mod 2^64 (two's complement for negatives), as uint64.

    ``parties`` is how many such vectors will be summed: each value must stay below 2^62 / parties (scaled), so
    their sum cannot wrap. ``fields`` names the values in the error.
    """
    if isinstance(parties, bool) or not isinstance(parties, int) or parties < 1:
        raise ValueError(f"parties must be a positive int, got {parties!r}")
    x = np.asarray(values, dtype=np.float64).ravel()
    if not np.isfinite(x).all():
        i = int(np.flatnonzero(~np.isfinite(x))[0])
        raise FixedPointRangeError(f"cannot encode NaN or infinite values for secure aggregation "
                                   f"(value {_name(i, fields)} is {x[i]!r})")
    scaled = np.rint(x * 2.0**frac_bits)
    if scaled.size and np.abs(scaled).max() >= _LIMIT / parties:
        i = int(np.abs(scaled).argmax())
        raise FixedPointRangeError(
            f"value {_name(i, fields)} = {x[i]!r} is too large for {frac_bits}-bit fixed point summed over "
            f"{parties} market(s): |value| must stay below {_LIMIT / parties / 2.0**frac_bits:.6g}, or the "
            "total would wrap around"
        )
    return scaled.astype(np.int64).view(np.uint64)


def decode(total: np.ndarray, frac_bits: int = FRAC_BITS) -> np.ndarray:
    """Fixed-point integers mod 2^64 back to floats; refuses a total out of range (wrapped, or masks left in)."""
    signed = np.asarray(total, dtype=np.uint64).view(np.int64)
    # |signed| >= 2^62 (tested on the int64, without abs: abs(-2^63) overflows)
    out = (signed >= _LIMIT) | (signed <= -_LIMIT)
    if out.any():
        i = int(np.flatnonzero(out)[0])
        raise FixedPointRangeError(
            f"total {i} of {signed.size} is out of the fixed-point range (|total| >= 2^62): the sum wrapped "
            "around, or masks that should have cancelled did not (a vector masked under another roster); "
            "refusing to decode it"
        )
    return signed.astype(np.float64) / 2.0**frac_bits


# --- seeds and masks -----------------------------------------------------------------------------


def _context(federation: str, round: int, label: str, a: str, b: str) -> bytes:
    if not (isinstance(federation, str) and federation and isinstance(label, str) and label):
        raise ValueError("federation and label must be non-empty strings")
    if isinstance(round, bool) or not isinstance(round, int) or round < 0:
        raise ValueError(f"round must be a non-negative int, got {round!r}")
    pair = sorted((a, b))
    doc = {"federation": federation, "round": round, "label": label, "pair": pair}
    return _INFO + b"|" + json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def pair_seed(me: Identity, peer: PublicIdentity, *, federation: str, round: int, label: str) -> bytes:
    """The 32-byte seed `me` shares with `peer` for this (federation, round, label); both ends get the same."""
    if peer.party == me.party:
        raise SecAggError(f"market '{me.party}' cannot pair with itself")
    shared = me.enc_private.exchange(parse_enc_public(peer.enc_public))
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=_context(federation, round, label, me.party, peer.party))
    return hkdf.derive(shared)


def _mask(seed: bytes, n: int) -> np.ndarray:
    """n uint64 words of AES-256-CTR keystream under `seed` (a fresh key per pair, round and label)."""
    enc = Cipher(algorithms.AES256(seed), modes.CTR(b"\x00" * 16)).encryptor()
    return np.frombuffer(enc.update(b"\x00" * (8 * n)) + enc.finalize(), dtype="<u8").astype(np.uint64)


def _check_roster(names: Sequence[str], who: str) -> list[str]:
    roster = sorted(set(names))
    if len(roster) != len(list(names)):
        raise SecAggError(f"roster lists a market twice: {sorted(names)}")
    if len(roster) < MIN_PARTIES:
        raise SecAggError(
            f"secure aggregation needs at least {MIN_PARTIES} markets, {who} has {len(roster)} "
            f"({', '.join(roster) or 'none'}): with two, each could deduce the other's part from the total"
        )
    return roster


def _signed_mask(me: str, peer: str, seed: bytes, n: int) -> np.ndarray:
    """What `me` adds for the pair (me, peer): +mask if me sorts first, -mask (mod 2^64) otherwise."""
    m = _mask(seed, n)
    return m if me < peer else (np.uint64(0) - m)


def mask_vector(
    values,
    *,
    me: Identity,
    roster: Mapping[str, PublicIdentity],
    federation: str,
    round: int,
    label: str,
    frac_bits: int = FRAC_BITS,
    fields: Sequence[str] | None = None,
) -> np.ndarray:
    """`values` encoded and masked with every pairwise mask between `me` and the rest of `roster` (uint64)."""
    names = _check_roster(list(roster), "the roster")
    if me.party not in roster:
        raise SecAggError(f"market '{me.party}' is not in the roster {names}")
    out = encode(values, frac_bits, parties=len(names), fields=fields)  # the roster's sum must not wrap
    with np.errstate(over="ignore"):
        for peer in names:
            if peer != me.party:
                seed = pair_seed(me, roster[peer], federation=federation, round=round, label=label)
                out = out + _signed_mask(me.party, peer, seed, out.size)
    return out


def reveal_seeds(
    *,
    me: Identity,
    roster: Mapping[str, PublicIdentity],
    survivors: Sequence[str],
    federation: str,
    round: int,
    label: str,
) -> dict[str, str]:
    """A survivor's seeds with the markets that dropped out (hex by market), for the centre to remove their masks.

    Refuses if `me` is not a survivor or not in the roster, or if fewer than three survivors would remain (their
    total would then give away a survivor's part to the other). Seeds are only ever revealed with roster markets
    missing from the survivors (so never with `me`, nor with a market outside the roster).
    """
    names = _check_roster(list(roster), "the roster")
    alive = sorted(set(survivors))
    if me.party not in names:
        raise SecAggError(f"market '{me.party}' is asked to reveal seeds but is not in the roster {names}")
    if me.party not in alive:
        raise SecAggError(f"market '{me.party}' is asked to reveal seeds but is not listed among the survivors")
    unknown = set(alive) - set(names)
    if unknown:
        raise SecAggError(f"survivors {sorted(unknown)} are not in the roster {names}")
    _check_roster(alive, "the survivors' set")
    return {peer: pair_seed(me, roster[peer], federation=federation, round=round, label=label).hex()
            for peer in names if peer not in alive}


def unmask_sum(
    masked: Mapping[str, np.ndarray],
    *,
    roster: Sequence[str],
    revealed: Mapping[str, Mapping[str, str]] | None = None,
    frac_bits: int = FRAC_BITS,
) -> np.ndarray:
    """The plain total of the survivors' values from their masked vectors.

    `masked` holds the vectors that arrived (the survivors); every roster market missing from it has dropped out,
    and each survivor must have revealed its seed with each of them (`revealed[survivor][dropped]`, hex).
    """
    names = _check_roster(list(roster), "the roster")
    stray = set(masked) - set(names)
    if stray:
        raise SecAggError(f"masked vectors from markets outside the roster: {sorted(stray)}")
    alive = _check_roster(list(masked), "the set of delivered vectors")
    sizes = {m: np.asarray(v).size for m, v in masked.items()}
    if len(set(sizes.values())) != 1:
        raise SecAggError(f"masked vectors differ in length: {sizes}")
    n = next(iter(sizes.values()))
    dropped = [m for m in names if m not in masked]
    revealed = revealed or {}
    with np.errstate(over="ignore"):
        total = np.zeros(n, dtype=np.uint64)
        for vector in masked.values():
            v = np.asarray(vector)
            if v.dtype != np.uint64:
                raise SecAggError(f"masked vectors must be uint64, got {v.dtype}")
            total = total + v
        for survivor in alive:
            for gone in dropped:
                seed_hex = revealed.get(survivor, {}).get(gone)
                if seed_hex is None:
                    raise SecAggError(
                        f"market '{gone}' dropped out after masking and survivor '{survivor}' has not revealed "
                        "its seed with it: the total cannot be unmasked"
                    )
                try:
                    seed = bytes.fromhex(seed_hex)
                except (TypeError, ValueError):
                    raise SecAggError(f"revealed seed of '{survivor}' with '{gone}' is not hex") from None
                if len(seed) != 32:
                    raise SecAggError(f"revealed seed of '{survivor}' with '{gone}' is {len(seed)} bytes, not 32")
                total = total - _signed_mask(survivor, gone, seed, n)
    return decode(total, frac_bits)


# --- transport -----------------------------------------------------------------------------------


def to_wire(vector: np.ndarray) -> str:
    """A masked vector as base64 text (little-endian uint64 words) for a JSON payload."""
    return base64.b64encode(np.asarray(vector, dtype=np.uint64).astype("<u8").tobytes()).decode("ascii")


def from_wire(text: str) -> np.ndarray:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise SecAggError("masked vector is not valid base64") from None
    if len(raw) % 8:
        raise SecAggError(f"masked vector is {len(raw)} bytes, not a whole number of 8-byte words")
    return np.frombuffer(raw, dtype="<u8").astype(np.uint64)
