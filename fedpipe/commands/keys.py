"""`fedpipe keys`: create, rotate and show a party's keys; the gRPC TLS CA, markets' requests, certificates."""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
from datetime import timedelta
from pathlib import Path

EPILOG = """\
A party is a market (--market NAME) or the centre (--aggregator). Each has an X25519 key pair (others encrypt to
it) and an Ed25519 key pair (it signs with it), kept in the keys folder: private keys mode 0600, optionally
protected by a passphrase, which is read from the FEDPIPE_KEY_PASSPHRASE environment variable or asked for at a
prompt, never given on the command line. `init` and `rotate` print the public part as TOML: paste it into the
federation file so every party trusts exactly those keys (without it, fedpipe trusts <party>.pub.json in the keys
folder, which is how the demo runs with no key step). `rotate` keeps the protection: passphrase-protected keys are
replaced by keys under the same passphrase; `rotate --passphrase` on unprotected keys adds one (to the retired copies
too).

examples:
  fedpipe keys init --market FD001 --config federations/cmapss.toml
  FEDPIPE_KEY_PASSPHRASE=... fedpipe keys init --aggregator --passphrase --keys-dir /secure/keys
  fedpipe keys rotate --market FD001 --grace 7d --config federations/cmapss.toml

TLS for the histogram strategy's gRPC channel (a histogram round does this by itself; this is the manual path):
each market makes its own TLS key and sends only a CSR signed with its identity; the centre, which holds the
federation's CA key, checks it and issues a short-lived client certificate.
  fedpipe keys tls --config federations/cmapss.toml --server-host 10.0.0.5        # centre: CA + server cert
  fedpipe keys tls-request --market FD001 --config federations/cmapss.toml        # market: key + FD001.csr(.sig)
  fedpipe keys tls-sign --csr FD001.csr --market FD001 --config federations/cmapss.toml   # centre
  fedpipe keys tls-install --market FD001 --cert FD001.pem --ca ca.pem --config federations/cmapss.toml
"""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "keys", help="create, rotate and show keys; TLS CA, requests and certificates",
        description="Manage the keys that seal and sign what crosses the border.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="keys_action", required=True, metavar="ACTION")

    def party_parser(name: str, help_: str) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help_, description=help_)
        who = p.add_mutually_exclusive_group(required=True)
        who.add_argument("--market", metavar="NAME", help="the market whose keys these are")
        who.add_argument("--aggregator", action="store_true", help="the centre's keys")
        _where(p)
        p.add_argument("--passphrase", action="store_true",
                       help="protect the private keys with a passphrase (from FEDPIPE_KEY_PASSPHRASE, else a prompt)")
        p.set_defaults(handler=handle)
        return p

    init = party_parser("init", "create a party's key pairs and print the public part as TOML")
    init.add_argument("--force", action="store_true", help="replace existing keys (every party must re-register)")
    rotate = party_parser("rotate", "replace a party's key pairs; old ones keep verifying for a grace period")
    rotate.add_argument("--grace", default="7d", type=_duration,
                        help="how long the old keys stay trusted: e.g. 7d, 12h, 30m, 0 (default 7d)")
    show = actions.add_parser("show", help=(h := "print a party's public keys as TOML"),
                              description=h + ", to paste into the federation file")
    who = show.add_mutually_exclusive_group(required=True)
    who.add_argument("--market", metavar="NAME", help="a market's keys")
    who.add_argument("--aggregator", action="store_true", help="the centre's keys")
    _where(show)
    show.set_defaults(handler=handle)

    tls = actions.add_parser(
        "tls", help="centre: create the federation's CA and the aggregator's server certificate (gRPC mTLS)",
        description="At the centre: create the federation's certificate authority (kept while valid) and a new "
                    "server certificate for the histogram strategy's mutual-TLS gRPC channel. Both private keys "
                    "stay here. Markets make their own keys: see tls-request and tls-sign. A histogram round does "
                    "all this by itself; these commands are the manual path.")
    tls.add_argument("--config", required=True, help="federation TOML file")
    tls.add_argument("--folder", help="where the CA and server files go (default <keys_dir>/tls/<federation>)")
    tls.add_argument("--server-host", default="127.0.0.1", help="address markets dial (default 127.0.0.1)")
    tls.add_argument("--rotate", action="store_true",
                     help="start a new CA: every market's certificate stops working until it is re-issued")
    tls.set_defaults(handler=handle_tls)

    request = actions.add_parser(
        "tls-request", help="market: make its TLS key and a certificate signing request, signed with its identity",
        description="At a market: generate the market's own ECDSA P-256 TLS key (mode 0600, in "
                    "<keys_dir>/tls/<federation>/<market>; it never leaves) and a CSR whose common name is the "
                    "market's name, plus a detached signature of the CSR with the market's Ed25519 identity "
                    "(FILE.sig). Send both files to the centre for `fedpipe keys tls-sign`.")
    request.add_argument("--market", required=True, metavar="NAME", help="this market")
    request.add_argument("--config", required=True, help="federation TOML file (its name and keys_dir)")
    request.add_argument("--keys-dir", help="this market's keys folder, if not the federation's keys_dir")
    request.add_argument("--out", help="where the CSR goes (default <market>.csr in the current folder)")
    request.add_argument("--passphrase", action="store_true",
                         help="the identity key is passphrase-protected (FEDPIPE_KEY_PASSPHRASE, else a prompt)")
    request.set_defaults(handler=handle_tls_request)

    sign = actions.add_parser(
        "tls-sign", help="centre: check a market's signed CSR and issue its client certificate",
        description="At the centre (it holds the CA key): check that CSR FILE was signed (FILE.sig) by MARKET's "
                    "registered identity and asks for common name MARKET, then issue a short-lived client "
                    "certificate (clientAuth). Send the certificate and the CA certificate back to the market "
                    "for `fedpipe keys tls-install`.")
    sign.add_argument("--csr", required=True, metavar="FILE", help="the market's CSR; its signature is FILE.sig")
    sign.add_argument("--market", required=True, metavar="NAME", help="the market the request must come from")
    sign.add_argument("--config", required=True, help="federation TOML file (whose keys the market registered)")
    sign.add_argument("--folder", help="the CA's folder (default <keys_dir>/tls/<federation>)")
    sign.add_argument("--out", help="where the certificate goes (default <market>.pem next to the CSR)")
    sign.set_defaults(handler=handle_tls_sign)

    install = actions.add_parser(
        "tls-install", help="market: check an issued certificate against its key and the CA, and keep it",
        description="At a market: check that the certificate is for this market's TLS key and chains to the CA, "
                    "then keep both next to the key, where histogram rounds find them.")
    install.add_argument("--market", required=True, metavar="NAME")
    install.add_argument("--config", required=True, help="federation TOML file")
    install.add_argument("--keys-dir", help="this market's keys folder, if not the federation's keys_dir")
    install.add_argument("--cert", required=True, help="the issued certificate")
    install.add_argument("--ca", required=True, help="the federation's CA certificate")
    install.set_defaults(handler=handle_tls_install)


def _where(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--config", help="federation TOML file: use its keys_dir and name the section to paste")
    where.add_argument("--keys-dir", help="keys folder (default .fedpipe/keys)")


def _duration(text: str) -> timedelta:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhms]?)\s*", text)
    if not m or (m.group(2) == "" and float(m.group(1)) != 0):
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use e.g. 7d, 12h, 30m, 45s or 0")
    unit = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds", "": "seconds"}[m.group(2)]
    return timedelta(**{unit: float(m.group(1))})


def _passphrase(args: argparse.Namespace, confirm: bool, needed: bool = False) -> bytes | None:
    """With --passphrase (or if `needed`): from FEDPIPE_KEY_PASSPHRASE, else asked at a prompt; otherwise None."""
    from fedpipe.errors import FedpipeError
    from fedpipe.keys import PASSPHRASE_ENV

    if not (getattr(args, "passphrase", False) or needed):
        return None
    if os.environ.get(PASSPHRASE_ENV):
        return os.environ[PASSPHRASE_ENV].encode()
    if sys.stdin is None or not sys.stdin.isatty():  # getpass would fail with EOFError, or read a pipe
        raise FedpipeError(f"no terminal to prompt for a passphrase; set {PASSPHRASE_ENV}")
    try:
        first = getpass.getpass("Key passphrase: ")
        if confirm and getpass.getpass("Repeat the passphrase: ") != first:
            raise FedpipeError("the two passphrases differ; nothing was written")
    except EOFError:
        raise FedpipeError("no passphrase entered; nothing was written") from None
    if not first:
        raise FedpipeError("empty passphrase; nothing was written")
    return first.encode()


def _keys_dir(args: argparse.Namespace) -> Path:
    if args.config:
        from fedpipe.config import load_federation

        return load_federation(args.config).keys_dir
    return Path(args.keys_dir or ".fedpipe/keys")


def _section(party: str) -> str:
    return "aggregator" if party == "aggregator" else f"markets.{party}"


def snippet(pub, previous=()) -> str:
    """The TOML a party's public keys are registered with in the federation file."""
    lines = [f"[{_section(pub.party)}]", f'enc_public = "{pub.enc_public}"', f'sign_public = "{pub.sign_public}"']
    for old in previous:
        lines += ["", f"[[{_section(pub.party)}.previous_keys]]", f'enc_public = "{old.identity.enc_public}"',
                  f'sign_public = "{old.identity.sign_public}"',
                  f"not_after = {old.not_after.strftime('%Y-%m-%dT%H:%M:%SZ')}"]
    return "\n".join(lines)


def handle(args: argparse.Namespace) -> int:
    from fedpipe import keys

    party = "aggregator" if args.aggregator else args.market
    directory = _keys_dir(args)
    where = f" into {args.config}" if args.config else " into the federation file"
    if args.keys_action == "init":
        pub = keys.generate_identity(directory, party, _passphrase(args, confirm=True), overwrite=args.force)
        print(f"# created keys for '{party}' in {directory} (fingerprint {pub.fingerprint}); private keys mode 0600")
        print(f"# paste this{where}:")
        print(snippet(pub))
    elif args.keys_action == "rotate":
        # encrypted keys are replaced by encrypted ones: their passphrase is needed even without --passphrase;
        # unprotected keys rotated with --passphrase gain a new one (asked twice at a prompt)
        encrypted = keys.is_encrypted(directory, party)
        passphrase = _passphrase(args, confirm=not encrypted, needed=encrypted)
        pub, old = keys.rotate_identity(directory, party, grace=args.grace, passphrase=passphrase)
        still = [r for r in keys.load_previous(directory, party) if r.valid_at()]
        print(f"# rotated keys of '{party}' in {directory}: {old.identity.fingerprint} -> {pub.fingerprint}; "
              f"the old keys stay trusted until {old.not_after:%Y-%m-%d %H:%M} UTC")
        print(f"# replace the [{_section(party)}] keys in {args.config or 'the federation file'} with:")
        print(snippet(pub, still))
    else:
        pub = keys.load_public_identity(directory, party)
        print(f"# '{party}' in {directory} (fingerprint {pub.fingerprint})")
        print(snippet(pub, [r for r in keys.load_previous(directory, party) if r.valid_at()]))
    return 0


def _read(path: str | Path, what: str) -> bytes:
    from fedpipe.errors import FedpipeError

    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise FedpipeError(f"{path}: cannot read the {what} ({exc.strerror})") from None


def _centre_tls(args: argparse.Namespace):
    from fedpipe.config import load_federation

    federation = load_federation(args.config)
    return federation, Path(args.folder) if args.folder else federation.keys_dir / "tls" / federation.name


def _market_tls(args: argparse.Namespace):
    from fedpipe.config import load_federation
    from fedpipe.tls import MarketTls

    federation = load_federation(args.config)
    keys_dir = Path(args.keys_dir) if args.keys_dir else federation.keys_dir
    return federation, keys_dir, MarketTls(keys_dir / "tls" / federation.name / args.market)


def handle_tls(args: argparse.Namespace) -> int:
    from fedpipe import tls

    _, folder = _centre_tls(args)
    files = tls.issue_server(tls.ensure_ca(folder, rotate=args.rotate), args.server_host)
    print(f"CA: {files.ca_cert}\nserver ({args.server_host}): {files.server_cert}")
    print("Keep ca-key.pem and server-key.pem here. Markets make their own keys (fedpipe keys tls-request); "
          "a histogram round asks them by itself.")
    return 0


def handle_tls_request(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives import serialization

    from fedpipe import keys, sealing, tls

    federation, keys_dir, files = _market_tls(args)
    identity = keys.load_identity(keys_dir, args.market, _passphrase(args, confirm=False))
    pem = tls.ensure_request(files, args.market).public_bytes(serialization.Encoding.PEM)
    out = Path(args.out or f"{args.market}.csr")
    tls.write_bytes(out, pem)
    tls.write_bytes(Path(f"{out}.sig"), sealing.sign_model(pem, federation=federation.name, round=0,
                                                          signer=identity, kind="tls-csr"))
    print(pem.decode(), end="")
    print(f"# new TLS key for '{args.market}' in {files.key} (mode 0600, stays here)")
    print(f"# send {out} and {out}.sig to the centre: fedpipe keys tls-sign --csr {out.name} --market "
          f"{args.market} --config ...")
    return 0


def handle_tls_sign(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives import serialization

    from fedpipe import sealing, tls, trust
    from fedpipe.errors import FedpipeError

    federation, folder = _centre_tls(args)
    if args.market not in federation.markets:
        raise FedpipeError(f"market '{args.market}' is not in {args.config}")
    if args.market in trust.revoked_markets(federation):
        raise FedpipeError(f"market '{args.market}' is revoked in {args.config}: no certificate")
    csr_path = Path(args.csr)
    pem = _read(csr_path, "CSR")
    signature = _read(f"{csr_path}.sig", "CSR's signature (tls-request writes it next to the CSR)")
    sealing.verify_model(pem, signature, federation=federation.name, round=0,
                         signer=trust.trusted_keys(federation, args.market), kind="tls-csr")
    ca_cert, ca_key = tls.load_ca(tls.FederationTls(folder))
    cert = tls.sign_csr(ca_cert, ca_key, tls.load_csr(pem, args.market), args.market)
    out = Path(args.out) if args.out else csr_path.with_name(f"{args.market}.pem")
    tls.write_bytes(out, cert.public_bytes(serialization.Encoding.PEM))
    print(f"# '{args.market}': client certificate {out}, valid until {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    print(f"# send it with {folder / 'ca.pem'} to the market: fedpipe keys tls-install --market {args.market} "
          f"--cert {out.name} --ca ca.pem --config ...")
    return 0


def handle_tls_install(args: argparse.Namespace) -> int:
    from fedpipe import tls

    _, _, files = _market_tls(args)
    client = tls.install_certificate(files, args.market, _read(args.cert, "certificate"),
                                     _read(args.ca, "CA certificate"))
    print(f"# '{args.market}': certificate {client.cert} matches {client.key} and chains to {client.ca}")
    return 0
