"""Powering a local node on and off, freezing it for a checkpoint, and its status.

A node's processes are found by what they are, never by memory: its namespaces,
its cgroup parent, its pidfiles, and containerd shims under its exec-root.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

from lab.errors import ProviderError
from lab.host.cgroups import (
    all_pids,
    in_cgroup,
    in_namespaces,
    is_shim_of,
    remove_cgroup_tree,
    stopped_or_gone,
)
from lab.host.mounts import is_ns_mount, mounts_under, ns_identity
from lab.host.proc import docker_ping, kill_and_wait, pid_alive, read_pid, run, wait_until
from lab.providers.local import dockerd, namespaces, sshd
from lab.providers.local.layout import NodeLayout
from lab.spec import LabSpec

FREEZE_SWEEPS = 10  # rescans for processes forked while the others were being stopped
FREEZE_TIMEOUT = 10.0


def boot(node: NodeLayout, spec: LabSpec, shared_dir: Path) -> None:
    """Mount namespace, link up, sshd, dockerd: the node as after power on."""
    if not node.netns_file.exists() or not is_ns_mount(node.uts_file):
        raise ProviderError(f"{node.name} has no namespaces: run `inv lab.up` first")
    node.containerd_run.mkdir(parents=True, exist_ok=True)
    namespaces.create_mount_ns(node, namespaces.private_binds(node, spec, shared_dir))
    namespaces.set_link(node, up=True)
    sshd.start(node)
    dockerd.start(node, spec)


def power_off(node: NodeLayout, graceful: bool = True) -> None:
    """Stop every process of the node and release its mount namespace."""
    if graceful:
        dockerd.stop(node)
    for _ in range(5):  # a dying dockerd may still spawn a shim: sweep until empty
        pids = node_pids(node)
        if not pids:
            break
        kill_and_wait(pids)
    for point in mounts_under(node.mnt_file):
        run(["umount", point], check=False)
    # dockerd trusts containerd's pidfile: a stale one whose PID was reused by
    # another process makes the next dockerd wait for a containerd that isn't there.
    containerd_pidfile = node.exec_root / "containerd" / "containerd.pid"
    for pidfile in (node.dockerd_pidfile, node.sshd_pidfile, containerd_pidfile):
        pidfile.unlink(missing_ok=True)
    remove_cgroup_tree(node.cgroup_parent.lstrip("/"))


def node_pids(node: NodeLayout) -> set[int]:
    """Every process that belongs to the node, by namespace, cgroup, pidfile or shim."""
    idents = {ident for ident in (ns_identity(node.mnt_file), ns_identity(node.netns_file))
              if ident}  # fmt: skip
    pids = {p for p in (read_pid(node.dockerd_pidfile), read_pid(node.sshd_pidfile)) if p}
    for pid in all_pids():
        if pid == os.getpid():
            continue
        if (
            in_namespaces(pid, idents)
            or in_cgroup(pid, node.cgroup_parent)
            or is_shim_of(pid, node.exec_root)
        ):
            pids.add(pid)
    return {p for p in pids if pid_alive(p)}


@contextlib.contextmanager
def frozen(nodes: list[NodeLayout]) -> Iterator[None]:
    """SIGSTOP every process of ``nodes`` (and what they fork meanwhile); SIGCONT after."""
    stopped: set[int] = set()
    try:
        for _ in range(FREEZE_SWEEPS):
            found = set().union(*(node_pids(node) for node in nodes)) - stopped
            if not found:
                break
            for pid in found:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
            stopped |= found
        else:
            raise ProviderError("the nodes kept starting processes: could not freeze them")
        # A process stops only when its current system call returns: wait for all.
        if not wait_until(lambda: all(map(stopped_or_gone, stopped)), FREEZE_TIMEOUT):
            raise ProviderError("some node processes did not stop for the checkpoint")
        yield
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def status(node: NodeLayout) -> str:
    if not node.netns_file.exists():
        return "absent"
    docker_up = read_pid(node.dockerd_pidfile) is not None and docker_ping(node.socket)
    sshd_up = read_pid(node.sshd_pidfile) is not None
    if docker_up and sshd_up:
        return "running"
    return "stopped" if not (docker_up or sshd_up) else "degraded"
