"""Finding and ending the processes of one lab part: by namespace, cgroup or shim.

Nothing here kills by name: a process belongs to a node when its mount or network
namespace is the node's, its cgroup lies under the node's cgroup parent, or it is
a containerd shim whose ``-address`` is under the node's exec-root.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from lab.host.mounts import mountinfo
from lab.host.proc import kill_and_wait, wait_until

CGROUP_PREFIX = "ha-registry-lab"
CGROUP_BUSY_WAIT = 5.0  # a cgroup whose last task just died can stay busy for a moment


def all_pids() -> Iterator[int]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            yield int(entry)


def in_namespaces(pid: int, namespaces: set[tuple[int, int]]) -> bool:
    for kind in ("mnt", "net"):
        try:
            st = os.stat(f"/proc/{pid}/ns/{kind}")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in namespaces:
            return True
    return False


def in_cgroup(pid: int, cgroup_parent: str) -> bool:
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        path = line.split(":", 2)[-1]
        if path == cgroup_parent or path.startswith(cgroup_parent + "/"):
            return True
    return False


def is_shim_of(pid: int, exec_root: Path) -> bool:
    """A containerd shim whose -address (containerd socket) lies under ``exec_root``."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if not args or b"containerd-shim" not in args[0]:
        return False
    for flag, value in zip(args, args[1:], strict=False):
        if flag == b"-address" and value.decode(errors="replace").startswith(f"{exec_root}/"):
            return True
    return False


def stopped_or_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("T", "t", "Z", "X")


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in task.read_text().split()]
    return found


def kill_processes_of(cgroup_parent: str, exec_root: Path) -> None:
    """SIGKILL the containers (by cgroup) and shims (by -address) a dockerd left behind."""
    pids = [p for p in all_pids() if in_cgroup(p, cgroup_parent) or is_shim_of(p, exec_root)]
    kill_and_wait([c for p in pids for c in children(p)] + pids)


def remove_cgroup_tree(relative: str, only_if_empty: bool = False) -> None:
    """rmdir a cgroup subtree in every hierarchy, deepest first (cgroups cannot be rm -r'd).

    With ``only_if_empty`` a cgroup that still has child cgroups (another lab's) is
    left at once: waiting for it to empty would only wait for the other lab to end.
    """
    for root in _cgroup_roots():
        top = root / relative
        if not top.is_dir():
            continue
        if only_if_empty:
            if not any(p.is_dir() for p in top.iterdir()):
                wait_until(lambda d=top: _try_rmdir(d), CGROUP_BUSY_WAIT, 0.1)
            continue
        dirs = [top, *[p for p in top.rglob("*") if p.is_dir()]]
        for directory in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            wait_until(lambda d=directory: _try_rmdir(d), CGROUP_BUSY_WAIT, 0.1)


def _cgroup_roots() -> list[Path]:
    return [Path(point) for point, kind in mountinfo() if kind in ("cgroup", "cgroup2")]


def _try_rmdir(path: Path) -> bool:
    try:
        path.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True
