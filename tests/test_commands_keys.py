"""`fedpipe keys`: the CLI over fedpipe.keys and fedpipe.tls, run through fedpipe.cli.main."""

from __future__ import annotations

import io
import stat
import tomllib

import pytest
import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fedpipe import trust
from fedpipe.cli import main
from fedpipe.config import load_federation
from fedpipe.keys import PASSPHRASE_ENV, KeyFileError, generate_identity, load_identity, load_public_identity


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _fed(tmp_path, markets=("FD001", "FD002", "FD003")):
    doc = {"federation": {"name": "f", "usecase": "predictive_maintenance", "quorum": 1,
                          "keys_dir": str(tmp_path / "keys")},
           "model": {"base_score": 0.5},  # bagging needs an agreed intercept (fedpipe.config)
           "markets": {m: {"data": f"data/{m}"} for m in markets}}
    path = tmp_path / "fed.toml"
    path.write_text(tomli_w.dumps(doc))
    return path


def test_init_prints_toml_that_registers_the_keys(tmp_path, capsys):
    config = _fed(tmp_path)
    assert main(["keys", "init", "--market", "FD001", "--config", str(config)]) == 0
    assert main(["keys", "init", "--aggregator", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    keys_dir = tmp_path / "keys"
    assert _mode(keys_dir / "FD001.enc.pem") == _mode(keys_dir / "FD001.sign.pem") == 0o600
    assert _mode(keys_dir / "aggregator.sign.pem") == 0o600
    assert "PRIVATE" not in out
    # what was printed, pasted into the federation file, is what the federation then trusts
    snippet = tomllib.loads(out)
    doc = tomllib.loads(config.read_text())
    doc["markets"]["FD001"].update(snippet["markets"]["FD001"])
    doc["aggregator"] = snippet["aggregator"]
    config.write_text(tomli_w.dumps(doc))
    fed = load_federation(config)
    assert trust.trusted_keys(fed, "FD001") == [load_public_identity(keys_dir, "FD001")]
    assert trust.aggregator_keys(fed) == [load_public_identity(keys_dir, "aggregator")]


def test_init_refuses_to_overwrite(tmp_path, capsys):
    assert main(["keys", "init", "--market", "FD001", "--keys-dir", str(tmp_path)]) == 0
    before = (tmp_path / "FD001.sign.pem").read_bytes()
    assert main(["keys", "init", "--market", "FD001", "--keys-dir", str(tmp_path)]) == 2
    assert "already exist" in capsys.readouterr().err
    assert (tmp_path / "FD001.sign.pem").read_bytes() == before
    assert main(["keys", "init", "--market", "FD001", "--keys-dir", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "FD001.sign.pem").read_bytes() != before


def test_passphrase_from_environment_never_an_argument(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(PASSPHRASE_ENV, "s3cret")
    assert main(["keys", "init", "--market", "FD001", "--keys-dir", str(tmp_path), "--passphrase"]) == 0
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "FD001.enc.pem").read_bytes()
    assert load_identity(tmp_path, "FD001", b"s3cret").public == load_public_identity(tmp_path, "FD001")
    with pytest.raises(SystemExit):  # --passphrase takes no value: a secret on the command line is refused
        main(["keys", "init", "--market", "FD002", "--keys-dir", str(tmp_path), "--passphrase", "s3cret"])


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_passphrase_prompt_must_match(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    monkeypatch.setattr("sys.stdin", _Tty())
    answers = iter(["one", "two"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert main(["keys", "init", "--market", "FD001", "--keys-dir", str(tmp_path), "--passphrase"]) == 2
    assert "differ" in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_rotate_prints_new_and_previous_keys(tmp_path, capsys):
    main(["keys", "init", "--market", "FD001", "--keys-dir", str(tmp_path)])
    old = load_public_identity(tmp_path, "FD001")
    capsys.readouterr()
    assert main(["keys", "rotate", "--market", "FD001", "--keys-dir", str(tmp_path), "--grace", "12h"]) == 0
    snippet = tomllib.loads(capsys.readouterr().out)["markets"]["FD001"]
    new = load_public_identity(tmp_path, "FD001")
    assert snippet["enc_public"] == new.enc_public != old.enc_public
    (previous,) = snippet["previous_keys"]
    assert previous["sign_public"] == old.sign_public and previous["not_after"].tzinfo is not None
    assert main(["keys", "show", "--market", "FD001", "--keys-dir", str(tmp_path)]) == 0
    assert tomllib.loads(capsys.readouterr().out)["markets"]["FD001"]["previous_keys"][0]["enc_public"] == old.enc_public


def test_rotate_keeps_keys_protected_by_the_environment_passphrase(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(PASSPHRASE_ENV, "s3cret")
    assert main(["keys", "init", "--aggregator", "--keys-dir", str(tmp_path), "--passphrase"]) == 0
    # no --passphrase: the keys were protected, so the new ones are too, under the same passphrase
    assert main(["keys", "rotate", "--aggregator", "--keys-dir", str(tmp_path), "--grace", "1h"]) == 0
    new = load_public_identity(tmp_path, "aggregator")
    for name in ("aggregator.enc.pem", "aggregator.sign.pem"):
        assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / name).read_bytes() and _mode(tmp_path / name) == 0o600
    monkeypatch.delenv(PASSPHRASE_ENV)
    with pytest.raises(KeyFileError, match="passphrase is required"):
        load_identity(tmp_path, "aggregator")
    assert load_identity(tmp_path, "aggregator", b"s3cret").public == new


def test_rotate_of_protected_keys_asks_for_their_passphrase(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    monkeypatch.setattr("sys.stdin", _Tty())
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "typed")
    generate_identity(tmp_path, "FD001", passphrase=b"typed")
    assert main(["keys", "rotate", "--market", "FD001", "--keys-dir", str(tmp_path)]) == 0
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "FD001.sign.pem").read_bytes()
    assert load_identity(tmp_path, "FD001", b"typed").public == load_public_identity(tmp_path, "FD001")


@pytest.mark.parametrize("command", [["init", "--passphrase"], ["rotate"], ["rotate", "--passphrase"]])
def test_no_terminal_to_prompt_is_a_clear_error(tmp_path, monkeypatch, capsys, command):
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a tty (piped, or a job with no terminal)
    keys_dir = tmp_path / "keys"
    if command[0] == "rotate":
        generate_identity(keys_dir, "FD001", passphrase=b"pw")
    before = sorted(p.name for p in keys_dir.rglob("*")) if keys_dir.exists() else []
    assert main(["keys", *command, "--market", "FD001", "--keys-dir", str(keys_dir)]) == 2
    err = capsys.readouterr().err
    assert f"no terminal to prompt for a passphrase; set {PASSPHRASE_ENV}" in err and "Traceback" not in err
    assert (sorted(p.name for p in keys_dir.rglob("*")) if keys_dir.exists() else []) == before  # nothing written


@pytest.mark.parametrize("grace", ["7", "1w", "-1d", ""])
def test_rotate_rejects_bad_grace(tmp_path, grace):
    with pytest.raises(SystemExit):
        main(["keys", "rotate", "--market", "FD001", "--keys-dir", str(tmp_path), "--grace", grace])


def test_tls_ca_and_server_stay_at_the_centre_and_rotate(tmp_path, capsys):
    config = _fed(tmp_path)
    assert main(["keys", "tls", "--config", str(config)]) == 0
    tls_dir = tmp_path / "keys" / "tls" / "f"  # where histogram rounds look
    ca = x509.load_pem_x509_certificate((tls_dir / "ca.pem").read_bytes())
    x509.load_pem_x509_certificate((tls_dir / "server.pem").read_bytes()).verify_directly_issued_by(ca)
    assert _mode(tls_dir / "server-key.pem") == _mode(tls_dir / "ca-key.pem") == 0o600
    assert not list(tls_dir.glob("client-*"))  # no market keys made at the centre
    assert main(["keys", "tls", "--config", str(config)]) == 0
    assert (tls_dir / "ca.pem").read_bytes() == ca.public_bytes(serialization.Encoding.PEM)  # same CA kept
    assert main(["keys", "tls", "--config", str(config), "--rotate"]) == 0
    assert (tls_dir / "ca.pem").read_bytes() != ca.public_bytes(serialization.Encoding.PEM)


def test_tls_request_sign_install_by_hand(tmp_path, capsys, monkeypatch):
    config = _fed(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["keys", "init", "--market", "FD001", "--config", str(config)]) == 0
    assert main(["keys", "init", "--market", "FD002", "--config", str(config)]) == 0
    assert main(["keys", "tls", "--config", str(config)]) == 0
    assert main(["keys", "tls-request", "--market", "FD001", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "BEGIN CERTIFICATE REQUEST" in out and "PRIVATE" not in out
    market_dir = tmp_path / "keys" / "tls" / "f" / "FD001"
    assert _mode(market_dir / "key.pem") == 0o600
    # the request is FD001's, so it is refused in FD002's name
    assert main(["keys", "tls-sign", "--csr", "FD001.csr", "--market", "FD002", "--config", str(config)]) == 2
    assert "expected 'FD002'" in capsys.readouterr().err
    assert main(["keys", "tls-sign", "--csr", "FD001.csr", "--market", "FD001", "--config", str(config)]) == 0
    cert = x509.load_pem_x509_certificate((tmp_path / "FD001.pem").read_bytes())
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "FD001"
    ca = tmp_path / "keys" / "tls" / "f" / "ca.pem"
    assert main(["keys", "tls-install", "--market", "FD001", "--cert", "FD001.pem", "--ca", str(ca),
                 "--config", str(config)]) == 0
    assert (market_dir / "cert.pem").read_bytes() == (tmp_path / "FD001.pem").read_bytes()
    # FD002's key does not match FD001's certificate
    assert main(["keys", "tls-request", "--market", "FD002", "--config", str(config)]) == 0
    assert main(["keys", "tls-install", "--market", "FD002", "--cert", "FD001.pem", "--ca", str(ca),
                 "--config", str(config)]) == 2
    assert "is for 'FD001'" in capsys.readouterr().err
    (tmp_path / "FD002.csr.sig").unlink()
    assert main(["keys", "tls-sign", "--csr", "FD002.csr", "--market", "FD002", "--config", str(config)]) == 2
    assert "FD002.csr.sig: cannot read" in capsys.readouterr().err


def test_help_explains(capsys):
    with pytest.raises(SystemExit):
        main(["keys", "--help"])
    out = capsys.readouterr().out
    assert "FEDPIPE_KEY_PASSPHRASE" in out and "rotate" in out and "tls-request" in out and "tls-sign" in out
