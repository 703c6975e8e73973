"""The model registry: numbered global-model versions with the aliases ``champion`` and ``challenger``.

Layout, per federation, under the registry folder (``[registry] dir``, default ``registry/`` next to runs/)::

    <registry>/<federation>/registry.json      index: versions, aliases, champion history, events
    <registry>/<federation>/v0003/model.json   the global model (XGBoost JSON)
    <registry>/<federation>/v0003/lineage.json where it came from (fedpipe.lineage)
    <registry>/<federation>/v0003/gate.json    the "no market worse off" decision, per market
    <registry>/<federation>/v0003/card.md      the model card

Every change holds an exclusive lock (``fcntl.flock`` on ``.lock``) for its whole read-modify-write, so two
writers cannot lose each other's change. A version folder is written completely under a temporary name and
renamed into place before the index mentions it, and the index is replaced atomically (fedpipe.storage), so a
writer that dies at any point leaves the registry as it was (at most an unreferenced temporary folder).

Public API: :class:`Registry`, :class:`RegistryError`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from fedpipe.errors import FedpipeError
from fedpipe.storage import atomic_write_bytes, atomic_write_json

ALIASES = ("champion", "challenger")


class RegistryError(FedpipeError):
    """A registry operation was refused: unknown version, nothing to roll back to, lock not obtained."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class Registry:
    """One federation's model registry. Reads need no lock; every write takes it."""

    def __init__(self, root: str | Path, federation: str, lock_timeout_s: float = 60):
        self.root = Path(root)
        self.federation = federation
        self.dir = self.root / federation
        self.lock_timeout_s = lock_timeout_s

    # --- reading ---------------------------------------------------------------------------------

    @property
    def index_path(self) -> Path:
        return self.dir / "registry.json"

    def read(self) -> dict[str, Any]:
        if not self.index_path.exists():
            return {"federation": self.federation, "versions": [], "aliases": dict.fromkeys(ALIASES),
                    "champion_history": [], "events": []}
        try:
            return json.loads(self.index_path.read_text())
        except ValueError as exc:
            raise RegistryError(f"{self.index_path}: unreadable registry index: {exc}") from exc

    def versions(self) -> list[dict[str, Any]]:
        return self.read()["versions"]

    def aliases(self) -> dict[str, int | None]:
        return self.read()["aliases"]

    def resolve(self, ref: int | str) -> int:
        """A version number from ``3``, ``"3"``, ``"v3"``, ``"champion"`` or ``"challenger"``."""
        index = self.read()
        if isinstance(ref, str) and ref in ALIASES:
            if index["aliases"].get(ref) is None:
                raise RegistryError(f"registry {self.dir}: no {ref} yet")
            return int(index["aliases"][ref])
        try:
            number = int(str(ref).lower().removeprefix("v"))
        except ValueError:
            raise RegistryError(f"'{ref}' is not a version number, 'champion' or 'challenger'") from None
        if number not in {v["version"] for v in index["versions"]}:
            known = ", ".join(str(v["version"]) for v in index["versions"]) or "none"
            raise RegistryError(f"registry {self.dir}: no version {number} (versions: {known})")
        return number

    def version_dir(self, version: int) -> Path:
        return self.dir / f"v{version:04d}"

    def entry(self, ref: int | str) -> dict[str, Any]:
        """A version's index entry plus its aliases."""
        number = self.resolve(ref)
        index = self.read()
        entry = next(v for v in index["versions"] if v["version"] == number)
        return {**entry, "aliases": [a for a, v in index["aliases"].items() if v == number]}

    def load(self, ref: int | str, name: str) -> Any:
        """A stored file of a version: ``model.json`` (bytes), ``lineage.json``/``gate.json`` (dict), ``card.md`` (str)."""
        path = self.version_dir(self.resolve(ref)) / name
        if not path.exists():
            return None
        if name.endswith(".json") and name != "model.json":
            return json.loads(path.read_text())
        return path.read_bytes() if name == "model.json" else path.read_text()

    # --- writing ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[dict[str, Any]]:
        """Hold the registry's exclusive lock; yields the current index to modify and saves it on success."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "a+") as handle:
            deadline = time.monotonic() + self.lock_timeout_s
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise RegistryError(f"registry {self.dir} is locked by another writer "
                                            f"(waited {self.lock_timeout_s:.0f} s)") from None
                    time.sleep(0.05)
            try:
                index = self.read()
                yield index
                atomic_write_json(self.index_path, index)
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def add(self, model: bytes, lineage: dict[str, Any], *, files: dict[str, bytes] | None = None) -> int:
        """Register a new version (no alias yet); return its number."""
        with self.lock() as index:
            taken = {v["version"] for v in index["versions"]}
            taken |= {int(p.name[1:]) for p in self.dir.glob("v[0-9][0-9][0-9][0-9]")}  # orphans of a crash
            number = max(taken, default=0) + 1
            staging = Path(tempfile.mkdtemp(dir=self.dir, prefix=f".v{number:04d}."))
            try:
                (staging / "model.json").write_bytes(model)
                (staging / "lineage.json").write_text(json.dumps(lineage, indent=2, sort_keys=True, default=str))
                for name, data in (files or {}).items():
                    (staging / name).write_bytes(data)
                for path in staging.iterdir():
                    with open(path, "rb") as handle:
                        os.fsync(handle.fileno())
                os.chmod(staging, 0o755)
                os.replace(staging, self.version_dir(number))
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            index["versions"].append({
                "version": number, "registered": _now(), "run_id": lineage.get("run_id"),
                "round": lineage.get("round"), "model_sha256": lineage.get("model_sha256"),
                "markets": sorted(lineage.get("markets", {})), "status": "registered",
            })
            index["events"].append({"time": _now(), "event": "registered", "version": number})
        return number

    def write_file(self, ref: int | str, name: str, data: bytes) -> Path:
        """Store or replace one file (gate.json, card.md) of an existing version, atomically."""
        if name == "model.json":
            raise RegistryError("a registered model is never replaced; register a new version")
        path = self.version_dir(self.resolve(ref)) / name
        atomic_write_bytes(path, data)
        return path

    def decide(self, version: int, gate: dict[str, Any]) -> str:
        """Apply the gate's verdict: champion if it passed, challenger otherwise. Returns the alias given."""
        self.write_file(version, "gate.json", json.dumps(gate, indent=2, sort_keys=True, default=str).encode())
        with self.lock() as index:
            if gate["passed"]:
                self._make_champion(index, version, f"passed the gate: {gate['summary']}")
            else:
                index["aliases"]["challenger"] = version
                self._status(index, version, "challenger")
                index["events"].append({"time": _now(), "event": "challenger", "version": version,
                                        "reason": gate["summary"]})
        return "champion" if gate["passed"] else "challenger"

    def promote(self, ref: int | str, reason: str) -> int:
        """The council's decision: make a version champion (e.g. a challenger after review)."""
        version = self.resolve(ref)
        with self.lock() as index:
            if index["aliases"].get("champion") == version:
                raise RegistryError(f"version {version} is already the champion")
            self._make_champion(index, version, f"promoted: {reason}")
        return version

    def rollback(self, reason: str) -> int:
        """Make the previous champion champion again; the current one becomes challenger."""
        with self.lock() as index:
            history = index["champion_history"]
            if len(history) < 2:
                raise RegistryError(f"registry {self.dir}: no earlier champion to roll back to")
            current = history.pop()
            previous = history[-1]
            index["aliases"]["champion"] = previous
            index["aliases"]["challenger"] = current
            self._status(index, previous, "champion")
            self._status(index, current, "rolled back")
            index["events"].append({"time": _now(), "event": "rollback", "version": previous,
                                    "from": current, "reason": reason})
        return previous

    @staticmethod
    def _status(index: dict, version: int, status: str) -> None:
        for entry in index["versions"]:
            if entry["version"] == version:
                entry["status"] = status

    def _make_champion(self, index: dict, version: int, reason: str) -> None:
        old = index["aliases"].get("champion")
        if old is not None and old != version:
            self._status(index, old, "former champion")
        index["aliases"]["champion"] = version
        if index["aliases"].get("challenger") == version:
            index["aliases"]["challenger"] = None
        index["champion_history"].append(version)
        self._status(index, version, "champion")
        index["events"].append({"time": _now(), "event": "champion", "version": version, "previous": old,
                                "reason": reason})
