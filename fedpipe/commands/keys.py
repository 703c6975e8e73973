"""`fedpipe keys`: create, rotate and show a party's keys; issue the gRPC TLS certificates."""

from __future__ import annotations

import argparse
import getpass
import os
import re
from datetime import timedelta
from pathlib import Path

EPILOG = """\
A party is a market (--market NAME) or the centre (--aggregator). Each has an X25519 key pair (others encrypt to
it) and an Ed25519 key pair (it signs with it), kept in the keys folder: private keys mode 0600, optionally
protected by a passphrase, which is read from the FEDPIPE_KEY_PASSPHRASE environment variable or asked for at a
prompt, never given on the command line. `init` and `rotate` print the public part as TOML: paste it into the
federation file so every party trusts exactly those keys (without it, fedpipe trusts <party>.pub.json in the keys
folder, which is how the demo runs with no key step).

examples:
  fedpipe keys init --market FD001 --config federations/cmapss.toml
  FEDPIPE_KEY_PASSPHRASE=... fedpipe keys init --aggregator --passphrase --keys-dir /secure/keys
  fedpipe keys rotate --market FD001 --grace 7d --config federations/cmapss.toml
  fedpipe keys tls --config federations/cmapss.toml --server-host 10.0.0.5
"""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "keys", help="create, rotate and show keys; issue TLS certificates",
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
    show = actions.add_parser("show", help="print a party's public keys as TOML")
    who = show.add_mutually_exclusive_group(required=True)
    who.add_argument("--market", metavar="NAME")
    who.add_argument("--aggregator", action="store_true")
    _where(show)
    show.set_defaults(handler=handle)

    tls = actions.add_parser("tls", help="issue (or rotate) the CA, server and market certificates for gRPC mTLS",
                             description="Create the federation's certificate authority (kept if it exists), the "
                                         "aggregator's server certificate and one client certificate per market, "
                                         "for the histogram strategy's mutual-TLS gRPC channel.")
    tls.add_argument("--config", required=True, help="federation TOML file (its markets get client certificates)")
    tls.add_argument("--folder", help="where the certificates go (default <keys_dir>/tls)")
    tls.add_argument("--server-host", default="127.0.0.1", help="address markets dial (default 127.0.0.1)")
    tls.add_argument("--rotate", action="store_true", help="re-issue every market's client certificate too")
    tls.set_defaults(handler=handle_tls)


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


def _passphrase(args: argparse.Namespace, confirm: bool) -> bytes | None:
    from fedpipe.errors import FedpipeError
    from fedpipe.keys import PASSPHRASE_ENV

    if not getattr(args, "passphrase", False):
        return None
    if os.environ.get(PASSPHRASE_ENV):
        return os.environ[PASSPHRASE_ENV].encode()
    first = getpass.getpass("Key passphrase: ")
    if confirm and getpass.getpass("Repeat the passphrase: ") != first:
        raise FedpipeError("the two passphrases differ; nothing was written")
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
        pub, old = keys.rotate_identity(directory, party, grace=args.grace, passphrase=_passphrase(args, False))
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


def handle_tls(args: argparse.Namespace) -> int:
    from fedpipe import tls
    from fedpipe.config import load_federation

    federation = load_federation(args.config)
    folder = Path(args.folder) if args.folder else federation.keys_dir / "tls"
    markets = list(federation.markets)
    files = tls.create_federation_tls(folder, markets, server_host=args.server_host)  # server cert: always new
    if args.rotate:  # new client certificates too, under the same CA (each file replaced atomically)
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        ca_key = load_pem_private_key(files.ca_key.read_bytes(), password=None)
        for market in markets:
            cert, key = tls.issue_certificate(ca_cert, ca_key, market)
            tls.write_pem(files.client(market).key, key)
            tls.write_pem(files.client(market).cert, cert)
    print(f"CA: {files.ca_cert}\nserver ({args.server_host}): {files.server_cert}")
    for market in markets:
        print(f"{market}: {files.client(market).cert}")
    print("Give each market its own client certificate and key, and everyone the CA certificate; keep ca-key.pem "
          "with the council.")
    return 0
