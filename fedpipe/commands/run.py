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
    run.add_argument("--rounds", type=_positive, help="override the number of rounds in the config (>= 1)")
    from fedpipe.config import STRATEGIES

    run.add_argument("--strategy", choices=STRATEGIES,
                     help="override [federation] strategy: 'bagging' (each market adds k trees, weighted by rows), "
                          "'cyclic' (the model visits the markets in turn, each adding k trees), 'fedavg' (a "
                          "scikit-learn linear model, weights averaged by rows) or 'histogram' (exact federated "
                          "XGBoost over XGBoost's gRPC collective, mutual TLS)")
    run.add_argument("--run-id", help="name of the run folder (default: <federation>-<UTC timestamp>)")
    run.add_argument("--resume", metavar="RUN",
                     help="continue an interrupted run (its id under runs/, or its folder) after its last "
                          "completed round, from that round's global model; the round that was under way is "
                          "run again (its leftovers are moved to interrupted/). Use the same --config.")
    run.set_defaults(handler=handle)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def handle(args: argparse.Namespace) -> int:
    import logging
    import os

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # offline machines: no telemetry noise
    os.environ.setdefault("PREFECT_CLIENT_RETRY_EXTRA_CODES", "500")  # SQLite's "database is locked": retry
    from fedpipe.config import load_federation
    from fedpipe.strategies import check_strategy

    # Fail fast, before Prefect starts: a bad config, or a strategy this federation or machine cannot run
    # (e.g. histogram without XGBoost's federated plugin). The round flow checks again for API callers.
    federation = load_federation(args.config)
    check_strategy(args.strategy or federation.strategy, federation)
    if args.resume:
        from fedpipe.resume import run_folder

        run_folder(federation, args.resume)  # a run that is not there: say so now

    from fedpipe.central import comparison_table, markdown_table
    from flows.round import federated_training

    # Round progress comes from the round flow's logger; one "Finished in state" line per task is noise here.
    logging.getLogger("prefect.task_runs").setLevel(logging.WARNING)

    started = time.perf_counter()
    run_dir = Path(federated_training(config=str(Path(args.config).resolve()), rounds=args.rounds,
                                      run_id=args.run_id, resume=args.resume,
                                      strategy=args.strategy))
    print()
    print(f"Run folder: {run_dir}  ({time.perf_counter() - started:.0f} s)")
    print("Last round, on each market's own held-out data (lower log loss / MAE is better):")
    print(markdown_table(comparison_table(run_dir)))
    return 0
