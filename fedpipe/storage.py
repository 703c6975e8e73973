"""Atomic files and the exchange: the only place where the centre and the markets meet.

The exchange holds sealed updates, signed global models, sealed metrics and market status notes; never rows.
It is addressed by an fsspec URL (a local folder by default), so an object store works the same way.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; these are shared records, not secrets (keys have their own writer)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def atomic_write_parquet(path: Path, frame: pd.DataFrame) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o644)
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Exchange:
    """Round-addressed blobs at an fsspec URL.

    Layout: ``global/genesis.json`` and ``global/round-NNN.json`` (+ ``.sig``), ``round-NNN/updates/<market>.sealed``,
    ``round-NNN/visits/after-VV.json`` (+ ``.sig``, cyclic only),
    ``round-NNN/metrics/<market>.sealed``, ``round-NNN/status/<market>.json``.
    """

    def __init__(self, url: str | Path):
        self.url = str(url)
        self.fs, self.root = fsspec.core.url_to_fs(self.url)

    def _path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def global_model(self, round_: int) -> str:
        return self._path("global", f"round-{round_:03d}.json")

    def genesis(self) -> str:
        """The run's signed genesis document (+ ``.sig``): round 1's parent (fedpipe.central.publish_genesis)."""
        return self._path("global", "genesis.json")

    def visit_model(self, round_: int, visits: int) -> str:
        """Cyclic strategy: the model as it stands after ``visits`` markets have added their trees this round."""
        return self._path(f"round-{round_:03d}", "visits", f"after-{visits:02d}.json")

    def update(self, round_: int, market: str) -> str:
        return self._path(f"round-{round_:03d}", "updates", f"{market}.sealed")

    def metrics(self, round_: int, market: str) -> str:
        return self._path(f"round-{round_:03d}", "metrics", f"{market}.sealed")

    def status(self, round_: int, market: str) -> str:
        return self._path(f"round-{round_:03d}", "status", f"{market}.json")

    def dropped(self, round_: int, market: str) -> str:
        """The centre's own decision to leave a market out of a round; markets never write here."""
        return self._path(f"round-{round_:03d}", "dropped", f"{market}.json")

    def tls(self, round_: int, name: str) -> str:
        """Histogram strategy: the round's CA certificate, a market's TLS request or its issued certificate."""
        return self._path(f"round-{round_:03d}", "tls", name)

    def put(self, path: str, data: bytes) -> None:
        if self.fs.protocol in ("file", ("file", "local")) or "file" in self.fs.protocol:
            atomic_write_bytes(Path(path), data)
            return
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        self.fs.pipe_file(path, data)  # object stores publish a whole object at once

    def get(self, path: str) -> bytes:
        return self.fs.cat_file(path)

    def exists(self, path: str) -> bool:
        return self.fs.exists(path)

    def remove(self, path: str) -> None:
        if self.fs.exists(path):
            self.fs.rm(path)

    def listdir(self, path: str = "") -> list[str]:
        target = self._path(path) if path else self.root
        return sorted(self.fs.find(target)) if self.fs.exists(target) else []
