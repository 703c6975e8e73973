"""Split the vendored C-MAPSS subsets into N market folders by engine (unit) id, for load tests and benchmarks.

Market i takes subset FD00{1 + i % 4} and, of that subset's engines, those whose unit id falls in its share
(``unit % per_subset == i // 4``); held-out engines are dealt out in order of remaining life, so each share has
some near failure. With N = 4 each market is one whole
subset; with N = 32 each subset is shared by 8 markets of ~12-33 engines each.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

DATA = Path(__file__).resolve().parents[1] / "usecases" / "predictive_maintenance" / "data"
SUBSETS = ("FD001", "FD002", "FD003", "FD004")


def write_markets(n_markets: int, out_dir: Path) -> dict[str, Path]:
    """Write ``n_markets`` folders (train.parquet, test.parquet) under ``out_dir``; return {market: folder}."""
    if n_markets < 4 or n_markets % 4:
        raise ValueError(f"n_markets must be a multiple of 4 (one share of each subset), got {n_markets}")
    per_subset = n_markets // 4
    folders = {}
    for i in range(n_markets):
        subset, share = SUBSETS[i % 4], i // 4
        name = f"M{i + 1:02d}-{subset}"
        folder = Path(out_dir) / name
        folder.mkdir(parents=True, exist_ok=True)
        train = pd.read_parquet(DATA / subset / "train.parquet")
        train[train["unit"] % per_subset == share].to_parquet(folder / "train.parquet", index=False)
        test = pd.read_parquet(DATA / subset / "test.parquet")
        # Held-out engines dealt by their final remaining life, so every share gets engines near failure.
        order = test.groupby("unit")["rul"].min().sort_values(kind="stable").index
        mine = order[share::per_subset]
        test[test["unit"].isin(mine)].to_parquet(folder / "test.parquet", index=False)
        folders[name] = folder
    return folders


def write_federation(n_markets: int, out_dir: Path, *, rounds: int = 1, trees: int = 2, quorum: int | None = None,
                     max_depth: int = 4, **federation: object) -> Path:
    """Market folders plus a federation file over them (``out_dir/federation.toml``); returns the file."""
    import tomli_w  # the [test] extra: this helper serves tests and benchmarks

    out_dir = Path(out_dir)
    folders = write_markets(n_markets, out_dir / "markets")
    doc = {
        "federation": {"name": f"scale-{n_markets}", "usecase": "predictive_maintenance", "rounds": rounds,
                       "trees_per_round": trees, "quorum": quorum or max(1, n_markets // 2),
                       "runs_dir": str(out_dir / "runs"), "keys_dir": str(out_dir / "keys"), **federation},
        "model": {"max_depth": max_depth, "eta": 0.3, "base_score": 0.5},
        "markets": {name: {"data": str(folder), "state": str(out_dir / "state" / name)}
                    for name, folder in folders.items()},
    }
    path = out_dir / "federation.toml"
    path.write_bytes(tomli_w.dumps(doc).encode())
    return path
