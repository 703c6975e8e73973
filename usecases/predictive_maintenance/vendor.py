"""Vendor NASA C-MAPSS into this package as zstd-compressed Parquet.

Run once, from the repository root::

    python -m usecases.predictive_maintenance.vendor /work/shared/datasets/cmapss

For each subset FD00k it reads ``train_FD00k.txt``, ``test_FD00k.txt`` and ``RUL_FD00k.txt`` (after checking
their sha256 against the published originals), names the 26 columns, joins the true RUL into the test table
and writes ``data/FD00k/train.parquet`` and ``data/FD00k/test.parquet`` (zstd level 19, pyarrow's dictionary
encoding: about 1/6 of the text size). pandas' default float parser rounds correctly, so every number in the
Parquet equals the number in the text file (the vendoring test checks this against ``numpy.loadtxt``).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

SUBSETS = ("FD001", "FD002", "FD003", "FD004")
ID_COLUMNS = ["unit", "cycle"]
SETTINGS = [f"setting_{i}" for i in range(1, 4)]
SENSORS = [f"sensor_{i}" for i in range(1, 22)]
COLUMNS = ID_COLUMNS + SETTINGS + SENSORS

# sha256 of the originals, from /work/shared/datasets/MANIFEST.tsv
SHA256 = {
    "RUL_FD001.txt": "a19c8ec94931949d0485bdc35118206e9c81c4547b422efb9cf86f4ceddbceca",
    "RUL_FD002.txt": "c851dd96a6ea6998d3c4a8f834d3c8013aa90e93a6ed950dc826ad0655b2906b",
    "RUL_FD003.txt": "df1e0566306b174a2de41c67a3e7a51877889598b78643fc3e5685259091b7cb",
    "RUL_FD004.txt": "196b836b85a95ac7fdbbf29c5fdf1657382eafa445644d114ffaaf50dc2975e1",
    "test_FD001.txt": "3cda7109ce17bafb5443f2ac926cfcf88154b941b8c4cf95eb55d1ddd6f52851",
    "test_FD002.txt": "de7b5bf7e998a985c378488480528b7c02cff1406a46740def362dda8d9b4e02",
    "test_FD003.txt": "299babd63c8d987cef079c4a425429f33b3a34797d803bbe2ad48c29dbd0d790",
    "test_FD004.txt": "1dc675fff0624bac10786927c6715b37d1297657137400d2b1a3138d777a3ba5",
    "train_FD001.txt": "963b5e22825b34d8b21c69e1aeb4af3e647050eb672ee8834ba4b5d91d2de0f8",
    "train_FD002.txt": "dac6c4dbc4e7c1bdeb5747da3d313d05c395bb99801b44a002b26a2ba13d788f",
    "train_FD003.txt": "2abbe9968cc5e8eb091980f51b20f62bb4127336d3482cb52071d53bf23329e2",
    "train_FD004.txt": "27ef6160b6a1dcb2613a88de9c239f763b223f02cdc41dc5cdedc5dc189b6218",
}


def _check_sha256(path: Path) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SHA256[path.name]:
        raise ValueError(f"{path}: sha256 {digest} does not match the published original {SHA256[path.name]}")


def read_trajectories(path: Path) -> pd.DataFrame:
    """Read one whitespace-separated C-MAPSS trajectory file into named, typed columns."""
    table = pd.read_csv(path, sep=r"\s+", header=None)
    if table.shape[1] != len(COLUMNS):
        raise ValueError(f"{path}: expected {len(COLUMNS)} columns, found {table.shape[1]}")
    table.columns = COLUMNS
    table = table.astype({c: "float64" for c in SETTINGS + SENSORS})
    return table.astype({"unit": "int32", "cycle": "int32"})


def join_true_rul(test: pd.DataFrame, rul_path: Path) -> pd.DataFrame:
    """Add ``rul`` = true RUL of the unit at its last cycle + last observed cycle - cycle (int32)."""
    rul_at_end = np.loadtxt(rul_path, dtype=np.int64, ndmin=1)
    units = np.sort(test["unit"].unique())
    if len(rul_at_end) != len(units) or not np.array_equal(units, np.arange(1, len(units) + 1)):
        raise ValueError(f"{rul_path}: {len(rul_at_end)} RUL values for test units {units.min()}..{units.max()}")
    last_cycle = test.groupby("unit")["cycle"].transform("max").to_numpy()
    rul = rul_at_end[test["unit"].to_numpy() - 1] + last_cycle - test["cycle"].to_numpy()
    return test.assign(rul=rul.astype("int32"))


def vendor_subset(source: Path, subset: str, target: Path) -> dict[str, Path]:
    """Write ``target/<subset>/{train,test}.parquet`` from the C-MAPSS text files in ``source``."""
    names = {kind: source / f"{kind}_{subset}.txt" for kind in ("train", "test", "RUL")}
    for path in names.values():
        _check_sha256(path)
    tables = {
        "train": read_trajectories(names["train"]),
        "test": join_true_rul(read_trajectories(names["test"]), names["RUL"]),
    }
    out = target / subset
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for kind, table in tables.items():
        written[kind] = out / f"{kind}.parquet"
        table.to_parquet(written[kind], engine="pyarrow", compression="zstd", compression_level=19, index=False)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="folder holding the C-MAPSS text files")
    parser.add_argument("--target", type=Path, default=Path(__file__).parent / "data")
    args = parser.parse_args(argv)
    for subset in SUBSETS:
        for kind, path in vendor_subset(args.source, subset, args.target).items():
            print(f"{subset} {kind}: {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
