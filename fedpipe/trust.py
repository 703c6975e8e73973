"""Whom the federation trusts: each party's registered public keys, rotated-out keys in their grace period, and
revoked markets.

The federation file can register keys (what `fedpipe keys init` prints)::

    [aggregator]
    enc_public = "…"            # X25519, base64 of the raw 32 bytes
    sign_public = "…"           # Ed25519, base64 of the raw 32 bytes

    [markets.FD001]
    data = "…"
    enc_public = "…"
    sign_public = "…"
    revoked = false             # true: refuse everything this market seals
    [[markets.FD001.previous_keys]]   # what `fedpipe keys rotate` prints: old keys, trusted until not_after
    enc_public = "…"
    sign_public = "…"
    not_after = 2025-07-01T00:00:00Z

A party with no keys in the file is looked up in ``keys_dir`` (``<party>.pub.json`` plus ``<party>.previous.json``),
which is how the demo runs with no manual key step. Keys in the file win: the council's file, not a folder the
exchange could reach, is then the root of trust.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, model_validator

from fedpipe import keys

__all__ = ["PartyKeys", "PreviousKey", "aggregator_keys", "revoked_markets", "senders", "trusted_keys"]


class PreviousKey(BaseModel):
    """A rotated-out key pair, still trusted until ``not_after``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enc_public: str
    sign_public: str
    not_after: AwareDatetime = Field(description="end of the grace period (UTC)")

    @model_validator(mode="after")
    def _valid(self) -> PreviousKey:
        _parse_pair(self.enc_public, self.sign_public)
        return self


class PartyKeys(BaseModel):
    """The key fields a market's (or the aggregator's) table may carry in the federation file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enc_public: str | None = Field(None, description="registered X25519 public key (`fedpipe keys init` prints it)")
    sign_public: str | None = Field(None, description="registered Ed25519 public key")
    previous_keys: list[PreviousKey] = Field(default_factory=list, description="rotated-out keys in their grace period")
    revoked: StrictBool = Field(False, description="refuse every update and metrics envelope from this party")

    @model_validator(mode="after")
    def _pair(self) -> Any:
        if (self.enc_public is None) != (self.sign_public is None):
            raise ValueError("enc_public and sign_public must be given together")
        if self.enc_public is not None:
            _parse_pair(self.enc_public, self.sign_public)
        return self


def _parse_pair(enc: str, sign: str | None) -> None:
    try:
        keys.parse_enc_public(enc)
        keys.parse_sign_public(sign or "")
    except keys.KeyFileError as exc:
        raise ValueError(str(exc)) from None


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(timezone.utc)


def _registered(party: str, table: PartyKeys | None, now: datetime) -> list[keys.PublicIdentity] | None:
    if table is None or table.enc_public is None:
        return None
    current = keys.PublicIdentity(party, table.enc_public, table.sign_public or "")
    return [current] + [keys.PublicIdentity(party, p.enc_public, p.sign_public)
                        for p in table.previous_keys if now < p.not_after]


def trusted_keys(
    federation: Any, party: str, now: datetime | None = None, keys_dir: Any = None
) -> list[keys.PublicIdentity]:
    """`party`'s trusted public identities (current first): from the federation file, else from keys_dir
    (the federation's, unless a market keeps its own). Raises KeyFileError if the party has none.
    """
    table = getattr(federation, "aggregator", None) if party == "aggregator" else federation.markets.get(party)
    registered = _registered(party, table, _now(now))
    if registered is not None:
        return registered
    return keys.verification_keys(keys_dir or federation.keys_dir, party, now)


def aggregator_keys(federation: Any, now: datetime | None = None, keys_dir: Any = None) -> list[keys.PublicIdentity]:
    """The aggregator's trusted identities: seal to the first, accept global models signed by any."""
    return trusted_keys(federation, "aggregator", now, keys_dir)


def revoked_markets(federation: Any) -> frozenset[str]:
    return frozenset(name for name, m in federation.markets.items() if getattr(m, "revoked", False))


def senders(federation: Any, now: datetime | None = None) -> dict[str, list[keys.PublicIdentity]]:
    """Every market with keys we can find, mapped to its trusted identities (revoked markets included: the caller
    passes `revoked_markets` to `sealing.open_update` so the rejection says "revoked", not "unknown")."""
    out = {}
    for market in federation.markets:
        try:
            out[market] = trusted_keys(federation, market, now)
        except keys.KeyFileError:
            continue  # a market that never registered keys cannot have sealed anything
    return out
