"""How much memory one lab holds: RSS and PSS of its processes, found as the local
provider finds them (never by name): the node namespaces' processes (sshd, dockerd,
containerd, shims, sessions), its containers by their cgroup, and its mirror.

PSS shares a page between the processes that map it, so the PSS of several labs adds
up to what they cost together; RSS counts shared pages (the same binaries) in each.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lab.host.cgroups import CGROUP_PREFIX, all_pids, in_cgroup, in_namespaces
from lab.host.mounts import RUN_ROOT, ns_identity
from lab.host.proc import read_pid
from lab.spec import LabSpec


@dataclass(frozen=True)
class Memory:
    processes: int
    rss_mb: float
    pss_mb: float

    def as_dict(self) -> dict[str, float]:
        return {"processes": self.processes, "rss_mb": round(self.rss_mb, 1),
                "pss_mb": round(self.pss_mb, 1)}  # fmt: skip


def _kb(path: str, key: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def lab_pids(spec: LabSpec) -> set[int]:
    """The lab's processes. Network namespace files are named ``hrl-<lab>-<node>`` by the
    local provider (``ip netns``): the class reads them by that name, as ``ip netns``
    users do, rather than importing the provider."""
    files = [Path("/run/netns") / f"hrl-{spec.name}-{node.name}" for node in spec.nodes]
    idents = {ident for ident in map(ns_identity, files) if ident}
    cgroup = f"/{CGROUP_PREFIX}/{spec.name}"
    pids = {p for p in all_pids() if p != os.getpid()
            and (in_namespaces(p, idents) or in_cgroup(p, cgroup))}  # fmt: skip
    mirror = read_pid(RUN_ROOT / spec.name / "mirror.pid", "docker-registry")
    if mirror:
        pids.add(mirror)
    return pids


def lab_memory(spec: LabSpec) -> Memory:
    pids = lab_pids(spec)
    rss = sum(_kb(f"/proc/{p}/status", "VmRSS:") for p in pids)
    pss = sum(_kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids)
    return Memory(len(pids), rss / 1024, pss / 1024)
