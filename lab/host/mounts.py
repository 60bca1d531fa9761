"""Mounts on this host, and the mount points the kit had to create.

``RUN_ROOT`` holds every lab's runtime files (sockets, pidfiles, namespace files).
Directories the kit creates on the host only to mount over them (``/run/netns``,
``/mnt/docker_reg``, ...) are noted in a ledger and removed once no lab is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path

from lab.host.proc import run

RUN_ROOT = Path("/run/ha-registry-lab")
CREATED_DIRS_FILE = RUN_ROOT / "created-dirs.json"

_created_lock = threading.Lock()


def mountinfo(pid: str = "self") -> list[tuple[str, str]]:
    """(mount point, filesystem type) of every mount seen by ``pid``."""
    entries = []
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        mount_point = left.split()[4].encode().decode("unicode_escape")
        entries.append((mount_point, right.split()[0]))
    return entries


def mounts_under(*roots: Path) -> list[str]:
    """Host mount points at or under any of ``roots``, deepest first."""
    prefixes = [str(r) for r in roots]
    found = {
        point
        for point, _ in mountinfo()
        if any(point == p or point.startswith(p + "/") for p in prefixes)
    }
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def unmount_all_under(*roots: Path) -> None:
    """Lazily unmount everything at or under ``roots`` (deepest first)."""
    for point in mounts_under(*roots):
        run(["umount", "-l", point], check=False)


def is_ns_mount(path: Path) -> bool:
    return any(point == str(path) and kind == "nsfs" for point, kind in mountinfo())


def ns_identity(path: Path) -> tuple[int, int] | None:
    """(st_dev, st_ino) of a namespace file bound at ``path``, None if nothing is bound."""
    if not is_ns_mount(path):
        return None
    st = os.stat(path)
    return (st.st_dev, st.st_ino)


# ------------------------------------------------------ directories we create


def ensure_host_dir(path: Path) -> None:
    """Create a mount point that is missing on the host and note it for removal at destroy."""
    with _created_lock:
        if path.exists():
            return
        missing = [p for p in [path, *path.parents] if not p.exists()]
        _note_created("dirs", [str(p) for p in missing])
        path.mkdir(parents=True, exist_ok=True)


def note_netns_mount() -> None:
    """`ip netns add` turns /run/netns into a mount (and may create it): undo that at the end."""
    with _created_lock:
        netns_dir = Path("/run/netns")
        if not netns_dir.exists():
            _note_created("dirs", [str(netns_dir)])
        if str(netns_dir) not in {point for point, _ in mountinfo()}:
            _note_created("mounts", [str(netns_dir)])


def _note_created(kind: str, paths: list[str]) -> None:
    RUN_ROOT.mkdir(parents=True, exist_ok=True)
    created = _created()
    created.setdefault(kind, [])
    created[kind] += [p for p in paths if p not in created[kind]]
    CREATED_DIRS_FILE.write_text(json.dumps(created))


def _created() -> dict[str, list[str]]:
    try:
        return json.loads(CREATED_DIRS_FILE.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def remove_created_dirs_if_last() -> None:
    """Remove mount points we created, once no lab uses them any more.

    Removing a directory that is a mount point in another mount namespace detaches
    that mount there: so only when no other lab (or builder) is left under RUN_ROOT.
    """
    if not RUN_ROOT.exists() or any(p.is_dir() for p in RUN_ROOT.iterdir()):
        return
    created = _created()
    for point in created.get("mounts", []):
        if Path(point).is_dir() and not any(Path(point).iterdir()):
            run(["umount", point], check=False)
    for name in sorted(created.get("dirs", []), key=lambda p: p.count("/"), reverse=True):
        with contextlib.suppress(OSError):
            os.rmdir(name)
    CREATED_DIRS_FILE.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        RUN_ROOT.rmdir()
