"""Where `make demo`'s time goes: wall time, Prefect start-up, and the summed run time of each task.

Runs the demo federation once with a private Prefect home and the embedded API, then reads every task run
back from that API. Writes benchmarks/results/demo_timing.md (and .csv).

    python benchmarks/demo_timing.py [--config federations/cmapss.toml]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


async def _task_runs():
    from prefect import get_client

    async def every(read):
        found, offset = [], 0
        while batch := await read(limit=200, offset=offset):  # the API serves at most 200 a page
            found += batch
            offset += len(batch)
        return found

    async with get_client() as client:
        return await every(client.read_flow_runs), await every(client.read_task_runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="federations/cmapss.toml")
    args = parser.parse_args()
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="fedpipe-bench-")  # count only this run
    os.environ.pop("PREFECT_API_URL", None)
    os.chdir(tempfile.mkdtemp(prefix="fedpipe-bench-work-"))

    import pandas as pd

    started = time.time()
    from flows.round import federated_training  # imports are part of what a user waits for

    imported = time.time()
    federated_training(config=str(Path(args.config).resolve()) if Path(args.config).is_absolute()
                       else str(Path(__file__).resolve().parents[1] / args.config))
    finished = time.time()

    flows, tasks = asyncio.run(_task_runs())
    main_run = min((f for f in flows if f.name and f.start_time), key=lambda f: f.start_time)
    prefect_start = main_run.start_time.timestamp() - imported
    rows = pd.DataFrame([{"task": t.name.rsplit("-", 1)[0], "seconds": t.total_run_time.total_seconds()}
                         for t in tasks])
    by_task = rows.groupby("task")["seconds"].agg(["count", "sum", "median"]).sort_values("sum", ascending=False)
    RESULTS.mkdir(exist_ok=True)
    by_task.to_csv(RESULTS / "demo_timing.csv")
    lines = [
        "# Demo timing", "",
        f"- wall time: {finished - started:.1f} s (imports {imported - started:.1f} s, "
        f"Prefect temporary API start-up until the first flow run {prefect_start:.1f} s)",
        f"- flow runs: {len(flows)}, task runs: {len(tasks)}; summed task time {rows['seconds'].sum():.1f} s; "
        f"the rest is Prefect's own bookkeeping per flow and task run", "",
        "| task | runs | total s | median s |", "|---|---|---|---|",
        *[f"| {name} | {int(r['count'])} | {r['sum']:.2f} | {r['median']:.3f} |" for name, r in by_task.iterrows()],
    ]
    (RESULTS / "demo_timing.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
