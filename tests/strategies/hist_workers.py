"""Worker entry points for the histogram tests (spawned processes import this module by path)."""

from pathlib import Path

import numpy as np
import pandas as pd

from fedpipe.strategies import histogram
from fedpipe.tls import FederationTls

DATA = Path(__file__).resolve().parents[2] / "usecases" / "predictive_maintenance" / "data"
COLUMNS = ["setting_1", "setting_2", "sensor_2", "sensor_3", "sensor_4", "sensor_7", "sensor_11", "sensor_12"]
# max_bin well below the shards' distinct values, so how the cut points are chosen matters
PARAMS = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "base_score": 0.5, "seed": 0, "nthread": 1,
          "max_bin": 16}


def shard(rank: int, world: int = 2):
    """A small slice of real C-MAPSS FD001 (80 rows per worker), labelled "fails within 30 cycles"."""
    table = pd.read_parquet(DATA / "FD001" / "train.parquet")
    rul = table.groupby("unit")["cycle"].transform("max") - table["cycle"]
    rows = np.random.default_rng(0).choice(len(table), size=80 * world, replace=False)[rank::world]
    return table.iloc[rows][COLUMNS].to_numpy(), (rul.iloc[rows] <= 30).astype(int).to_numpy()


def worker(rank, world, port, tls_folder, market, out, timeout_s=60, cuts="agreed"):
    x, y = shard(rank, world)
    args = histogram.communicator_args(f"127.0.0.1:{port}", world, rank, FederationTls(Path(tls_folder)), market)
    booster = histogram.train_worker(PARAMS, x, y, 4, {**args, "dmlc_timeout": timeout_s}, cuts=cuts)
    Path(out).write_bytes(bytes(booster.save_raw("json")))
