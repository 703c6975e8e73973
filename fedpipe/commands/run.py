"""`fedpipe run`: federated rounds end to end."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser(
        "run", help="train a global model across a federation's markets",
        description="Run federated rounds end to end: validate, train, seal, aggregate, evaluate, report. "
                    "Writes runs/<run-id>/ (global model per round, metrics.parquet, roi.parquet, summary.md) "
                    "and points runs/latest at it. With PREFECT_API_URL set the run shows in that Prefect "
                    "server's UI; otherwise a temporary local Prefect API is started for the run.",
    )
    run.add_argument("--config", required=True, help="federation TOML file, e.g. federations/cmapss.toml")
    run.add_argument("--rounds", type=int, help="override the number of rounds in the config")
    run.add_argument("--run-id", help="name of the run folder (default: <federation>-<UTC timestamp>)")
    run.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from fedpipe.central import comparison_table, markdown_table
    from fedpipe.config import load_federation
    from flows.round import federated_training

    load_federation(args.config)  # fail fast on a bad config, before Prefect starts
    started = time.perf_counter()
    run_dir = Path(federated_training(config=str(Path(args.config).resolve()), rounds=args.rounds,
                                      run_id=args.run_id))
    print()
    print(f"Run folder: {run_dir}  ({time.perf_counter() - started:.0f} s)")
    print("Last round, on each market's own held-out data (lower log loss is better):")
    print(markdown_table(comparison_table(run_dir)))
    return 0
