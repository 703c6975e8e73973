"""kill -9 the central process at named points of a round; the last good round survives and --resume finishes.

Each `fedpipe run` is a real subprocess (own PREFECT_HOME, pointed at this session's temporary Prefect API) that
SIGKILLs itself at a point named by FEDPIPE_CRASH_AT (fedpipe.faults): no cleanup, no finally blocks, like a
power cut. One run is crashed again and again, each time resumed, until a resume runs to the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import xgboost as xgb

REPO = Path(__file__).resolve().parents[2]
FEDPIPE = Path(sys.executable).with_name("fedpipe")


def _fedpipe(args: list[str], cwd: Path, crash_at: str | None) -> subprocess.CompletedProcess:
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_HOME": str(cwd / "prefect-home"),
           "PYTHONPATH": str(REPO)}
    env.pop("FEDPIPE_CRASH_AT", None)
    if crash_at:
        env["FEDPIPE_CRASH_AT"] = crash_at
    proc = subprocess.Popen([str(FEDPIPE), "run", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, text=True)
    try:
        out, _ = proc.communicate(timeout=600)
    finally:
        try:  # anything the run left in its own session (it should leave nothing)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(proc.args, proc.returncode, out)


def _check_intact(run_dir: Path, expect_rounds: int) -> None:
    """Every recorded round's model matches its recorded hash; the tables hold no more than recorded."""
    records = json.loads((run_dir / "rounds.json").read_text()) if (run_dir / "rounds.json").exists() else []
    assert [r["round"] for r in records] == list(range(1, expect_rounds + 1))
    for record in records:
        raw = (run_dir / record["model"]).read_bytes()
        assert hashlib.sha256(raw).hexdigest() == record["model_sha256"]
        xgb.Booster().load_model(bytearray(raw))  # a whole model, not a torn one
    for name in ("metrics.parquet", "roi.parquet"):
        if (run_dir / name).exists():  # written before rounds.json: may hold the crashed round, never more
            assert pd.read_parquet(run_dir / name)["round"].max() <= expect_rounds + 1


CRASHES = [  # (crash point, rounds completed when it fires)
    ("after-updates:1", 0),
    ("mid-record:1", 0),
    ("after-model-saved:2", 1),
    ("after-model-published:3", 2),
    ("after-aggregate:3", 2),
]


def test_kill_9_at_any_point_then_resume_completes_without_double_counting(federation, tmp_path):
    markets, trees, rounds = ("FD001", "FD003", "FD004"), 2, 3
    config, _ = federation(markets=markets, rounds=rounds, trees=trees, quorum=2, subsample=0.1)
    run_dir = tmp_path / "runs" / "crashy"
    args = ["--config", str(config), "--run-id", "crashy"]
    for crash_at, completed in CRASHES:
        done = _fedpipe(args if crash_at == CRASHES[0][0] else ["--config", str(config), "--resume", "crashy"],
                        tmp_path, crash_at)
        assert done.returncode == -signal.SIGKILL, f"{crash_at}: exit {done.returncode}\n{done.stdout[-3000:]}"
        _check_intact(run_dir, completed)

    final = _fedpipe(["--config", str(config), "--resume", "crashy"], tmp_path, None)
    assert final.returncode == 0, final.stdout[-3000:]
    _check_intact(run_dir, rounds)

    records = json.loads((run_dir / "rounds.json").read_text())
    assert all(sorted(r["contributors"]) == list(markets) for r in records)
    booster = xgb.Booster()
    booster.load_model(str(run_dir / "models" / f"round-{rounds:03d}.json"))
    assert booster.num_boosted_rounds() == rounds * len(markets) * trees  # each market counted once per round
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    assert len(metrics) == rounds * (len(markets) * 3 + 2)  # + personalised per market, + 2 federation rows
    assert not metrics.duplicated(["round", "market", "model"]).any()
    assert (run_dir / "interrupted").is_dir()  # the crashed attempts' leftovers were kept aside, not reused
    assert "round 3" in (run_dir / "summary.md").read_text()


def test_resume_refuses_a_corrupted_last_model(federation, tmp_path):
    from fedpipe.config import load_federation
    from fedpipe.resume import ResumeError, resume_run

    config, _ = federation(markets=("FD001",), quorum=1)
    run_dir = tmp_path / "runs" / "damaged"
    (run_dir / "models").mkdir(parents=True)
    (run_dir / "models" / "round-001.json").write_bytes(b'{"learner": {}}')
    (run_dir / "rounds.json").write_text(json.dumps([{"round": 1, "model": "models/round-001.json",
                                                      "model_sha256": "0" * 64}]))
    with pytest.raises(ResumeError, match="does not match the sha256 recorded for round 1"):
        resume_run(load_federation(config), "damaged")
    with pytest.raises(ResumeError, match="no run 'nope'"):
        resume_run(load_federation(config), "nope")
