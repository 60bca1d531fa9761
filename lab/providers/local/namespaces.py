"""A node's namespaces: network (a veth on the lab bridge), UTS (its hostname) and a
private mount namespace in which the node's own directories replace the host's.

Processes enter them with ``nsenter`` (``ip netns exec`` remounts /sys and breaks
dockerd). Namespace files are bound under the node's run dir, which must be a
private mount for that.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from lab.host.mounts import (
    ensure_host_dir,
    is_ns_mount,
    mountinfo,
    mounts_under,
    note_netns_mount,
)
from lab.host.proc import run
from lab.providers.local.layout import NodeLayout
from lab.spec import LabSpec


def enter(node: NodeLayout) -> list[str]:
    """argv prefix that runs a command inside the node's namespaces."""
    return [
        "nsenter",
        f"--net={node.netns_file}",
        f"--uts={node.uts_file}",
        f"--mount={node.mnt_file}",
        "--",
    ]


def private_run_dir(run_dir: Path) -> None:
    """Namespace files may only be bound on a private mount: make the lab's run dir one."""
    if str(run_dir) not in {point for point, _ in mountinfo()}:
        run(["mount", "--bind", str(run_dir), str(run_dir)])
    run(["mount", "--make-private", str(run_dir)])


def create_netns(node: NodeLayout, bridge: str) -> None:
    """The node's network namespace with ``eth0`` on the bridge and deliberately no
    default route (one makes every pull wait for docker.io DNS timeouts)."""
    if not node.netns_file.exists():
        note_netns_mount()
        run(["ip", "netns", "add", node.netns])
    if run(["ip", "link", "show", node.veth], check=False).returncode != 0:
        run(["ip", "link", "add", node.veth, "type", "veth", "peer", "name", "eth0",
             "netns", node.netns])  # fmt: skip
    run(["ip", "link", "set", node.veth, "master", bridge])
    in_ns = ["ip", "-n", node.netns]
    address = f"{node.ip}/{node.prefixlen}"
    if f" {address} " not in run([*in_ns, "-o", "addr", "show", "dev", "eth0"]).stdout:
        run([*in_ns, "addr", "add", address, "dev", "eth0"])
    run([*in_ns, "link", "set", "lo", "up"])
    run([*in_ns, "link", "set", "eth0", "up"])


def create_uts(node: NodeLayout) -> None:
    if not is_ns_mount(node.uts_file):
        node.uts_file.touch()
        run(["unshare", f"--uts={node.uts_file}", "hostname", node.name])


def set_link(node: NodeLayout, up: bool) -> None:
    """The node's cable: its veth on the bridge side."""
    run(["ip", "link", "set", node.veth, "up" if up else "down"], check=up)


def private_binds(node: NodeLayout, spec: LabSpec, shared_dir: Path) -> list[tuple[Path, str]]:
    """(host source, path inside the node): what makes the node's files its own."""
    binds = [
        (node.private_dir / "root", "/root"),
        (node.private_dir / "etc-docker", "/etc/docker"),
    ]
    config_dir = spec.registry.config_dir.rstrip("/")
    if not (config_dir + "/").startswith("/etc/docker/"):
        binds.append((node.private_dir / "registry-config", config_dir))
    binds += [
        (shared_dir, spec.nfs.mount),
        (node.containerd_run, "/run/containerd"),
        (node.sshd_privsep, "/run/sshd"),
    ]
    return binds


def create_mount_ns(node: NodeLayout, binds: list[tuple[Path, str]]) -> None:
    """A private mount namespace for the node, bound at ``mnt_file``."""
    if is_ns_mount(node.mnt_file):
        return
    for source, target in binds:
        source.mkdir(parents=True, exist_ok=True)
        ensure_host_dir(Path(target))
    node.sshd_privsep.chmod(0o755)
    node.mnt_file.touch()
    run(["unshare", f"--mount={node.mnt_file}", "--propagation", "private", "true"])
    # Inside: drop copies of other namespaces' files (they would pin other nodes'
    # namespaces after their teardown), then bind the node's own directories.
    script = ["set -e"]
    nsfs = [p for p, kind in mountinfo() if kind == "nsfs"]
    script += [f"umount -l {shlex.quote(p)} 2>/dev/null || true" for p in nsfs]
    script += [f"mount --bind {shlex.quote(str(s))} {shlex.quote(t)}" for s, t in binds]
    run(["nsenter", f"--mount={node.mnt_file}", "sh", "-c", "\n".join(script)])


def remove_namespaces(node: NodeLayout) -> None:
    """Unbind the node's namespace files, delete its netns and veth."""
    for ns_file in (node.mnt_file, node.uts_file):
        for point in mounts_under(ns_file):
            run(["umount", "-l", point], check=False)
    if node.netns_file.exists() or node.netns in run(["ip", "netns", "list"]).stdout.split():
        run(["ip", "netns", "del", node.netns], check=False)
    if run(["ip", "link", "show", node.veth], check=False).returncode == 0:
        run(["ip", "link", "del", node.veth], check=False)
