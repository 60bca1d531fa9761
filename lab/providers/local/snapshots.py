"""Checkpoints of a local lab: one directory per name holding each node's state
(a btrfs snapshot where possible) and a copy of the shared directory.

A checkpoint is written as ``<name>.partial`` and renamed when complete, so a crash
never leaves half a checkpoint under its name. Replaced or deleted state is moved
into a trash directory at once and deleted later, off the critical path.
"""

from __future__ import annotations

import time
from pathlib import Path

from lab.errors import ProviderError
from lab.providers.local.btrfs import remove_tree

NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


class SnapshotStore:
    def __init__(self, snapshot_dir: Path, trash_dir: Path, lab: str):
        self.dir = snapshot_dir
        self.trash_dir = trash_dir
        self.lab = lab

    def path(self, name: str, *, must_exist: bool) -> Path:
        if not name or not set(name) <= NAME_CHARS or name.startswith("."):
            raise ProviderError(f"{name!r} is not a snapshot name (letters, digits, . _ -)")
        path = self.dir / name
        if must_exist and not path.is_dir():
            known = ", ".join(self.names()) or "none"
            raise ProviderError(f"no snapshot {name!r} of lab {self.lab} (have: {known})")
        return path

    def names(self) -> list[str]:
        if not self.dir.exists():
            return []
        return sorted(
            p.name
            for p in self.dir.iterdir()
            if p.is_dir() and not p.name.endswith(".partial") and not p.name.startswith(".")
        )

    def discard(self, path: Path) -> None:
        """Move ``path`` aside at once; deleting its ~30,000 files per node waits for
        :meth:`empty_trash` (during the next restore's boot, or destroy)."""
        if not path.exists():
            return
        self.trash_dir.mkdir(parents=True, exist_ok=True)
        path.rename(self.trash_dir / f"{path.name}.{time.time_ns()}")

    def empty_trash(self) -> None:
        remove_tree(self.trash_dir)
