"""The ``fedpipe`` command: a thin parser over the modules in fedpipe.commands."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from fedpipe.commands import COMMANDS
from fedpipe.errors import FedpipeError

DESCRIPTION = """\
fedpipe: markets train one model together; no market's rows leave it.

Each market validates its data against the shared contract (expectations/), trains XGBoost trees locally and
sends back only encrypted, signed trees; the centre aggregates them into the next global model. Prefect runs it:
with PREFECT_API_URL set the run shows in that server's UI, otherwise a temporary local API is started.

Run `fedpipe COMMAND --help` for each command's options.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedpipe", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"fedpipe.commands.{name}").register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("fedpipe").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return args.handler(args)
    except FedpipeError as exc:
        print(f"fedpipe: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
