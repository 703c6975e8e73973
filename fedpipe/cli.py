"""The ``fedpipe`` command."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from fedpipe.errors import FedpipeError

DESCRIPTION = """\
fedpipe: markets train one model together; no market's rows leave it.

Each market validates its data against the shared contract (expectations/), trains XGBoost trees locally and
sends back only encrypted, signed trees; the centre aggregates them into the next global model. Prefect runs it:
with PREFECT_API_URL set the run shows in that server's UI, otherwise a temporary local API is started.
"""


def _run(args: argparse.Namespace) -> int:
    from fedpipe.central import comparison_table, markdown_table
    from fedpipe.config import load_federation
    from flows.round import federated_training

    load_federation(args.config)  # fail fast on a bad config, before Prefect starts
    started = time.perf_counter()
    run_dir = Path(federated_training(config=str(Path(args.config).resolve()), rounds=args.rounds,
                                      run_id=args.run_id))
    elapsed = time.perf_counter() - started
    print()
    print(f"Run folder: {run_dir}  ({elapsed:.0f} s)")
    print("Last round, on each market's own held-out data (lower log loss is better):")
    print(markdown_table(comparison_table(run_dir)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedpipe", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run", help="train a global model across a federation's markets",
        description="Run federated rounds end to end: validate, train, seal, aggregate, evaluate, report. "
                    "Writes runs/<run-id>/ (global model per round, metrics.parquet, roi.parquet, summary.md) "
                    "and points runs/latest at it.",
    )
    run.add_argument("--config", required=True, help="federation TOML file, e.g. federations/cmapss.toml")
    run.add_argument("--rounds", type=int, help="override the number of rounds in the config")
    run.add_argument("--run-id", help="name of the run folder (default: <federation>-<UTC timestamp>)")
    run.set_defaults(handler=_run)
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
