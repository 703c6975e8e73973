"""fedpipe.trust: keys registered in the federation file, the keys_dir fallback, grace periods, revocation."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import tomli_w

from fedpipe import trust
from fedpipe.config import load_federation
from fedpipe.errors import ConfigError
from fedpipe.keys import KeyFileError, generate_identity, load_identity, rotate_identity

T0 = datetime(2025, 3, 1, tzinfo=timezone.utc)


def _write(tmp_path, markets: dict, aggregator: dict | None = None):
    doc = {"federation": {"name": "f", "usecase": "predictive_maintenance", "quorum": 1,
                          "keys_dir": str(tmp_path / "keys")},
           "model": {"base_score": 0.5},
           "markets": {m: {"data": f"data/{m}", **extra} for m, extra in markets.items()}}
    if aggregator is not None:
        doc["aggregator"] = aggregator
    path = tmp_path / "fed.toml"
    path.write_text(tomli_w.dumps(doc))
    return load_federation(path)


def _keys(pub) -> dict:
    return {"enc_public": pub.enc_public, "sign_public": pub.sign_public}


def test_falls_back_to_keys_dir(tmp_path):
    pub = generate_identity(tmp_path / "keys", "FD001")
    fed = _write(tmp_path, {"FD001": {}, "FD002": {}})
    assert trust.trusted_keys(fed, "FD001") == [pub]
    assert trust.senders(fed) == {"FD001": [pub]}  # FD002 has no keys anywhere: it cannot have sealed anything
    with pytest.raises(KeyFileError, match="aggregator.pub.json"):
        trust.aggregator_keys(fed)


def test_keys_in_the_federation_file_win(tmp_path):
    on_disk = generate_identity(tmp_path / "keys", "FD001")
    registered = generate_identity(tmp_path / "elsewhere", "FD001")
    agg = generate_identity(tmp_path / "elsewhere", "aggregator")
    fed = _write(tmp_path, {"FD001": _keys(registered)}, aggregator=_keys(agg))
    assert trust.trusted_keys(fed, "FD001") == [registered] != [on_disk]
    assert trust.aggregator_keys(fed) == [agg]


def test_previous_keys_in_the_file_are_trusted_until_not_after(tmp_path):
    old = generate_identity(tmp_path / "k", "FD001")
    new, retired = rotate_identity(tmp_path / "k", "FD001", grace=timedelta(days=3), now=T0)
    entry = {**_keys(new), "previous_keys": [{**_keys(old), "not_after": retired.not_after}]}
    fed = _write(tmp_path, {"FD001": entry})
    assert trust.trusted_keys(fed, "FD001", now=T0 + timedelta(days=2)) == [new, old]
    assert trust.trusted_keys(fed, "FD001", now=T0 + timedelta(days=3)) == [new]


def test_revoked_markets(tmp_path):
    fed = _write(tmp_path, {"FD001": {"revoked": True}, "FD002": {}})
    assert trust.revoked_markets(fed) == {"FD001"}


@pytest.mark.parametrize("entry,field", [
    ({"enc_public": "not base64!"}, "markets.FD001"),
    ({"sign_public": "AAAA"}, "markets.FD001"),
    ({"revoked": "yes"}, "markets.FD001.revoked"),
])
def test_bad_key_fields_name_the_field(tmp_path, entry, field):
    with pytest.raises(ConfigError) as info:
        _write(tmp_path, {"FD001": entry})
    assert info.value.field == field


def test_bad_key_pair_names_the_problem(tmp_path):
    pub = generate_identity(tmp_path, "FD001")
    with pytest.raises(ConfigError, match="given together"):
        _write(tmp_path, {"FD001": {"enc_public": pub.enc_public}})
    with pytest.raises(ConfigError, match="32 raw bytes"):
        _write(tmp_path, {"FD001": {"enc_public": pub.enc_public, "sign_public": "AAAA"}})
    with pytest.raises(ConfigError, match="aggregator"):
        _write(tmp_path, {"FD001": {}}, aggregator={"enc_public": pub.enc_public, "sign_public": "AAAA"})
    with pytest.raises(ConfigError, match="timezone"):
        _write(tmp_path, {"FD001": {**_keys(pub), "previous_keys": [{**_keys(pub), "not_after": datetime(2025, 1, 1)}]}})


def test_registered_keys_seal_and_open(tmp_path):
    """End to end through the centre's view: a market sealing with the key the file registers is accepted."""
    from fedpipe.sealing import open_update, seal_update

    m = generate_identity(tmp_path / "m", "FD001")
    a = generate_identity(tmp_path / "a", "aggregator")
    fed = _write(tmp_path, {"FD001": _keys(m)}, aggregator=_keys(a))
    env = seal_update(b"trees", federation="f", round=1, market="FD001", parent="0" * 64,
                      recipient=trust.aggregator_keys(fed)[0], signer=load_identity(tmp_path / "m", "FD001"))
    _, payload = open_update(env, federation="f", round=1, parent="0" * 64, senders=trust.senders(fed),
                             recipient=load_identity(tmp_path / "a", "aggregator"), revoked=trust.revoked_markets(fed))
    assert payload == b"trees"
