"""Round time against the number of markets (4, 8, 16, 32), and where it goes.

Splits the vendored C-MAPSS engines across N markets (fedpipe.split), runs 2 rounds of the embedded default
(every market flow a subflow in this process, one temporary Prefect API for all sizes, started before timing),
then reads every task run back from Prefect. Round 1 includes the first Great Expectations validation and the
local-only baseline training (both cached by content afterwards); round 2 is the steady state.
Writes benchmarks/results/scale.csv and scale.md.

    python benchmarks/scale.py [--markets 4 8 16 32] [--rounds 2] [--trees 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Task names (without Prefect's "-<hash>" suffix) -> where the time goes.
PHASES = {
    "load_market_data": "loading", "validate_market_data": "validation", "train_local_update": "training",
    "evaluate_models": "evaluation", "seal_update": "sealing", "seal_metrics": "sealing",
    "open_updates": "opening+screening", "open_metrics": "opening+screening", "aggregate_updates": "aggregation",
}


async def _task_runs():
    from prefect import get_client

    found, offset = [], 0
    async with get_client() as client:
        while batch := await client.read_task_runs(limit=200, offset=offset):
            found += batch
            offset += len(batch)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--markets", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--trees", type=int, default=2)
    args = parser.parse_args()
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="fedpipe-scale-")
    os.environ.pop("PREFECT_API_URL", None)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")  # a busy machine

    from prefect import flow

    from fedpipe.split import write_federation
    from flows.round import federated_training

    flow(name="warm-up")(lambda: None)()  # start the temporary API before any timing
    windows, rows, load_before = [], [], os.getloadavg()[1]
    for n in args.markets:
        work = Path(tempfile.mkdtemp(prefix=f"fedpipe-scale-{n}-"))
        config = write_federation(n, work, rounds=args.rounds, trees=args.trees)
        print(f"{n} markets: running {args.rounds} rounds ...", flush=True)
        started = time.time()
        run_dir = Path(federated_training(config=str(config)))
        finished = time.time()
        windows.append((n, started, finished))
        ends = [datetime.fromisoformat(r["finished"]).timestamp()
                for r in json.loads((run_dir / "rounds.json").read_text())]
        for i, end in enumerate(ends, start=1):
            rows.append({"markets": n, "round": i, "round_s": end - (ends[i - 2] if i > 1 else started),
                         "contributors": len(json.loads((run_dir / "rounds.json").read_text())[i - 1]["contributors"])})
        print(f"  {finished - started:.1f} s", flush=True)
        report(windows, rows, args, load_before)  # after every size, so a long benchmark keeps what it measured


def report(windows, rows, args, load_before) -> None:
    import numpy as np
    import pandas as pd

    from fedpipe.central import markdown_table

    load_after = os.getloadavg()[1]
    tasks = asyncio.run(_task_runs())
    spent = []
    for task in tasks:
        name = task.name.rsplit("-", 1)[0]
        if not task.start_time or not task.total_run_time or "-" in name:
            continue  # a hyphenated name is a subflow's stand-in task run: its time is its tasks' time
        at = task.start_time.timestamp()
        n = next((n for n, a, b in windows if a <= at <= b), None)
        if n is not None:
            spent.append({"markets": n, "phase": PHASES.get(name, "other tasks"),
                          "seconds": task.total_run_time.total_seconds()})
    phases = pd.DataFrame(spent).pivot_table(index="markets", columns="phase", values="seconds", aggfunc="sum").fillna(0)
    rounds = pd.DataFrame(rows)
    table = rounds.pivot(index="markets", columns="round", values="round_s").add_prefix("round_").add_suffix("_s")
    table["wall_s"] = [b - a for _, a, b in windows]
    table = table.join(phases.add_suffix("_s"))
    table["prefect_and_orchestration_s"] = table["wall_s"] - phases.sum(axis=1)
    table["prefect_share"] = table["prefect_and_orchestration_s"] / table["wall_s"]
    last_round = f"round_{args.rounds}_s"
    table["s_per_market_in_last_round"] = table[last_round] / table.index
    RESULTS.mkdir(exist_ok=True)
    table.round(3).to_csv(RESULTS / "scale.csv")

    lines = [
        "# Round time against markets", "",
        f"`python benchmarks/scale.py` on this machine ({os.cpu_count()} cores, shared), {args.rounds} rounds, "
        f"{args.trees} trees per market per round, embedded default (market flows as subflows, one after another). "
        "Seconds. Round 1 includes the first Great Expectations validation and the local-only model (cached "
        "afterwards); the last round is the steady state. Phase columns are summed Prefect task run times; "
        "`prefect_and_orchestration_s` is wall time spent outside every task (flow and task run bookkeeping "
        "against the API, subflow start-up, key loading). "
        f"Machine load (5-min load average) was {load_before:.1f} at the start and {load_after:.1f} at the end "
        f"on {os.cpu_count()} cores: other work shared the CPU, so absolute seconds are inflated; the growth "
        "with markets is the figure to read.", "",
        markdown_table(table.round(2).reset_index()), "",
    ]
    if len(table) >= 2:
        x, y = table.index.to_numpy(dtype=float), table[last_round].to_numpy()
        slope, intercept = np.polyfit(x, y, 1)
        r2 = 1 - ((y - (intercept + slope * x)) ** 2).sum() / max(((y - y.mean()) ** 2).sum(), 1e-12)
        first, last = table.index.min(), table.index.max()
        ratio = table.loc[last, "s_per_market_in_last_round"] / table.loc[first, "s_per_market_in_last_round"]
        shape = ("about linear" if 0.75 <= ratio <= 1.33 else
                 "faster than linear" if ratio > 1.33 else "slower than linear")
        lines += [
            f"Growth: from {first} to {last} markets ({last / first:.0f}x) the last round takes "
            f"{table.loc[last, last_round] / table.loc[first, last_round]:.1f}x as long. Least-squares fit: "
            f"round ≈ {intercept:.1f} s + {slope:.2f} s × markets (R² = {r2:.3f}); time per market per round goes from "
            f"{table.loc[first, 's_per_market_in_last_round']:.2f} s to {table.loc[last, 's_per_market_in_last_round']:.2f} s, "
            f"so growth is {shape}. Prefect bookkeeping and orchestration take "
            f"{table['prefect_share'].min():.0%}-{table['prefect_share'].max():.0%} of the wall time.",
        ]
    (RESULTS / "scale.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
