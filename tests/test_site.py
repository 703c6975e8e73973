"""fedpipe.site: a market machine's own config decides where its data, state and keys are."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomli_w

from fedpipe import keys, market
from fedpipe.errors import ConfigError
from fedpipe.site import ENV, load_site, open_market_site, share_public_keys, site_from_env, write_site

DATA = Path(__file__).resolve().parents[1] / "usecases" / "predictive_maintenance" / "data"


@pytest.fixture
def federation_file(tmp_path):
    doc = {"federation": {"name": "f", "usecase": "predictive_maintenance", "quorum": 1,
                          "keys_dir": str(tmp_path / "centre-keys"), "runs_dir": str(tmp_path / "runs")},
           "model": {"base_score": 0.5},
           "markets": {"FD001": {"data": "/nowhere/the-centre-does-not-know", "subsample": 0.1}}}
    path = tmp_path / "federation.toml"
    path.write_bytes(tomli_w.dumps(doc).encode())
    return path


def test_relative_paths_are_relative_to_the_site_file(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "site.toml").write_text('market = "FD001"\ndata = "data"\nstate = "state"\nkeys_dir = "k"\n')
    site = load_site(tmp_path / "m" / "site.toml")
    assert site.data == tmp_path / "m" / "data" and site.keys_dir == tmp_path / "m" / "k"
    assert site.federation is None and site.fault_delay_s == 0


@pytest.mark.parametrize("text, field", [
    ('data = "d"\nstate = "s"\nkeys_dir = "k"\n', "market"),
    ('market = "FD 1"\ndata = "d"\nstate = "s"\nkeys_dir = "k"\n', "market"),
    ('market = "FD001"\ndata = "d"\nstate = "s"\nkeys_dir = "k"\ndtaa = "typo"\n', "dtaa"),
    ('market = "FD001"\ndata = "d"\nstate = "s"\nkeys_dir = "k"\nfault_delay_s = -1\n', "fault_delay_s"),
    ('market = "FD001\n', "(syntax)"),
])
def test_a_bad_site_file_names_the_file_and_field(tmp_path, text, field):
    path = tmp_path / "site.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_site(path)
    assert str(path) in str(err.value) and f"'{field}'" in str(err.value)


def test_missing_site_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="no such site file"):
        load_site(tmp_path / "absent.toml")


def test_site_from_env_refuses_another_markets_run(tmp_path, monkeypatch):
    path = write_site(tmp_path / "site.toml", "FD001", tmp_path / "d", tmp_path / "s", tmp_path / "k")
    monkeypatch.delenv(ENV, raising=False)
    assert site_from_env("FD001") is None
    monkeypatch.setenv(ENV, str(path))
    assert site_from_env("FD001").market == "FD001"
    with pytest.raises(ConfigError, match="runs market 'FD001' but was asked to run 'FD002'"):
        site_from_env("FD002")


def test_agent_trains_on_its_own_data_with_its_own_keys(tmp_path, monkeypatch, federation_file):
    """The federation file names no usable data folder; the site file does, and the keys live with the market."""
    site_file = write_site(tmp_path / "FD001" / "site.toml", "FD001", DATA / "FD001", tmp_path / "FD001" / "state",
                           tmp_path / "FD001" / "keys", federation_file)
    share_public_keys(tmp_path / "centre-keys", [load_site(site_file)])
    monkeypatch.setenv(ENV, str(site_file))
    site = open_market_site("/ignored/when/the/site/names/its/copy.toml", "FD001", str(tmp_path / "exchange"))
    assert site.data_dir == DATA / "FD001" and site.keys_dir == tmp_path / "FD001" / "keys"
    assert site.state_dir == tmp_path / "FD001" / "state" / "f"

    data = market.load_data(site)
    update = market.train_update(site, data, None)
    envelope = market.seal_payload(site, 1, "0" * 64, {"model": update.model, "n_rows": update.n_rows})
    # Only the market holds its private keys; the centre holds its public identity and can open the envelope.
    assert not (tmp_path / "centre-keys" / "FD001.sign.pem").exists()
    assert (tmp_path / "centre-keys" / "FD001.pub.json").exists()
    assert envelope.startswith(b"FPSEAL1\n")
    market.write_status(site, 1, "excluded", **market.describe_failure(site, OSError(f"{DATA / 'FD001'}/x broke")))
    note = json.loads((tmp_path / "exchange" / "round-001" / "status" / "FD001.json").read_text())
    assert str(DATA) not in json.dumps(note)  # the site's data path is hidden from the centre too


def test_share_public_keys_is_repeatable(tmp_path):
    sites = [load_site(write_site(tmp_path / m / "site.toml", m, tmp_path / m / "d", tmp_path / m / "s",
                                  tmp_path / m / "k")) for m in ("A", "B")]
    share_public_keys(tmp_path / "centre", sites)
    first = keys.load_public_identity(tmp_path / "centre", "A").fingerprint
    share_public_keys(tmp_path / "centre", sites)
    assert keys.load_public_identity(tmp_path / "centre", "A").fingerprint == first
    assert keys.load_public_identity(tmp_path / "B" / "k", "aggregator") == \
        keys.load_public_identity(tmp_path / "centre", "aggregator")


def test_share_public_keys_never_replaces_an_embedded_identity(tmp_path):
    """A key folder holding a market's private keys (the embedded demo's) must not get an agent's public key."""
    keys.ensure_identity(tmp_path / "shared", "A")
    before = (tmp_path / "shared" / "A.pub.json").read_bytes()
    site = load_site(write_site(tmp_path / "A" / "site.toml", "A", tmp_path / "d", tmp_path / "s", tmp_path / "k"))
    with pytest.raises(keys.KeyFileError, match="holds A's private keys"):
        share_public_keys(tmp_path / "shared", [site])
    assert (tmp_path / "shared" / "A.pub.json").read_bytes() == before
