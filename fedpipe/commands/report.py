"""`fedpipe report`: the run's self-contained HTML report for the data council."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser(
        "report", help="write a run's HTML report (plots, ROI, who was left out, lineage)",
        description="Write runs/<run>/report.html: one self-contained page (plots embedded, no network needed) "
                    "with, per market, the headline metric and the savings over rounds for the federated model "
                    "against the market's local-only model, the federation total, markets left out and why, and "
                    "a lineage summary (model hashes, contributors and their row counts). Also writes "
                    "headline.png, the headline plot on its own. Reads only the run folder.",
    )
    report.add_argument("run", nargs="?", default="runs/latest",
                        help="the run: its folder, or its id under runs/ (default: runs/latest)")
    report.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from fedpipe.report import write_report

    run = Path(args.run)
    if not run.exists() and (Path("runs") / args.run).exists():
        run = Path("runs") / args.run
    page, png = write_report(run)
    print(f"Report: {page}")
    print(f"Headline plot: {png}")
    return 0
