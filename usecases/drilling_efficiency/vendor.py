"""Vendor the USROP (Volve) drilling logs into this package as zstd-compressed Parquet.

Run once, from the repository root::

    python -m usecases.drilling_efficiency.vendor /work/shared/datasets/usrop_volve

For each of the four wells it reads the USROP CSV (after checking its sha256 against the published original),
drops the leading row-index column, renames the twelve columns to short snake_case names with units and writes
``data/<well>/well.parquet`` (zstd level 19). No row is dropped, reordered or altered: every value equals the
value in the CSV (the vendoring test checks this). The train/held-out split happens at load time.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import pandas as pd

# well (market name) -> original file and its sha256, from /work/shared/datasets/MANIFEST.tsv
WELLS = {
    "F-9A": ("USROP_A 0 N-NA_F-9_Ad.csv", "8f6c1dbb8636cdfaf2f8091ec745cc69c38f42f5e8b326fc777208a9ff65e415"),
    "F-7": ("USROP_A 1 N-S_F-7d.csv", "e556259dbfedfb1feccb03587da1e9957fd5710abc088dc5ee333fea0e704741"),
    "F-5": ("USROP_A 5 N-SH-F-5d.csv", "c95dc2653f79403aa51fb4ce91ebf296cf0a0b5b8bbbae0d16ffec136c6d8f38"),
    "F-9": ("USROP_A 6 N-SH_F-9d.csv", "8d53b98e28ee246a6673e518df34fd0052f69ea42f92704c409221a84ca9836f"),
}

# original header -> vendored column name
COLUMNS = {
    "Measured Depth m": "depth_m",
    "Weight on Bit kkgf": "wob_kkgf",
    "Average Standpipe Pressure kPa": "standpipe_pressure_kpa",
    "Average Surface Torque kN.m": "torque_knm",
    "Rate of Penetration m/h": "rop_m_per_h",
    "Average Rotary Speed rpm": "rpm",
    "Mud Flow In L/min": "mud_flow_l_per_min",
    "Mud Density In g/cm3": "mud_density_g_per_cm3",
    "Diameter mm": "bit_diameter_mm",
    "Average Hookload kkgf": "hookload_kkgf",
    "Hole Depth (TVD) m": "tvd_m",
    "USROP Gamma gAPI": "gamma_api",
}


def read_well(path: Path, sha256: str) -> pd.DataFrame:
    """Read one USROP CSV, check its hash and header, and return it with the vendored column names."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise ValueError(f"{path}: sha256 {digest} does not match the published original {sha256}")
    table = pd.read_csv(path, index_col=0)
    if list(table.columns) != list(COLUMNS):
        raise ValueError(f"{path}: unexpected header {list(table.columns)}")
    return table.rename(columns=COLUMNS).reset_index(drop=True).astype("float64")


def vendor(source: Path, target: Path) -> dict[str, Path]:
    written = {}
    for well, (name, sha256) in WELLS.items():
        out = target / well / "well.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        read_well(source / name, sha256).to_parquet(out, engine="pyarrow", compression="zstd",
                                                    compression_level=19, index=False)
        written[well] = out
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="folder holding the USROP CSV files")
    parser.add_argument("--target", type=Path, default=Path(__file__).parent / "data")
    args = parser.parse_args(argv)
    for well, path in vendor(args.source, args.target).items():
        print(f"{well}: {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
