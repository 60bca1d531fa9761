"""A node's own dockerd, started inside its namespaces with its own data-root,
exec-root, socket and cgroup parent."""

from __future__ import annotations

import signal

from lab.errors import ProviderError
from lab.host.cgroups import kill_processes_of
from lab.host.proc import (
    docker_ping,
    kill_and_wait,
    pid_alive,
    read_pid,
    spawn,
    tool_path,
    wait_until,
)
from lab.providers.local.layout import NodeLayout
from lab.providers.local.namespaces import enter
from lab.spec import LabSpec

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def argv(node: NodeLayout, spec: LabSpec) -> list[str]:
    return [
        tool_path("dockerd"),
        "--config-file", str(node.daemon_json),
        "--data-root", str(node.data_root),
        "--exec-root", str(node.exec_root),
        "--host", node.docker_host,
        "--pidfile", str(node.dockerd_pidfile),
        # On btrfs dockerd would pick its btrfs driver, whose per-layer subvolumes
        # a snapshot of the node's subvolume does not include.
        "--storage-driver", "overlay2",
        "--cgroup-parent", node.cgroup_parent,
        "--registry-mirror", f"http://{spec.mirror}",
        # A namespace node has no resolver: docker's embedded DNS never answers a name
        # it does not know (a MinIO peer before its first passing health check), and
        # containers gave up on such a lookup after glibc's 2 x 5 s. A real node's
        # resolver answers NXDOMAIN at once; one try of one second comes closest.
        "--dns-opt", "timeout:1", "--dns-opt", "attempts:1",
        *insecure_registries(spec),
        "--shutdown-timeout", "5",
    ]  # fmt: skip


def insecure_registries(spec: LabSpec) -> list[str]:
    """As the rendered daemon.json: with registry.tls off the whole lab network is plain
    HTTP (every node's registry, the load balancer); with it on, docker trusts the lab
    CA through certs.d and nothing is insecure (the mirror is named with http://)."""
    return [] if spec.registry.tls else ["--insecure-registry", spec.network.subnet]


def start(node: NodeLayout, spec: LabSpec) -> None:
    if read_pid(node.dockerd_pidfile) and docker_ping(node.socket):
        return
    log = node.log_dir / f"{node.name}-dockerd.log"
    pid = spawn([*enter(node), *argv(node, spec)], log)
    ready = wait_until(lambda: docker_ping(node.socket) or not pid_alive(pid), READY_TIMEOUT)
    if not (ready and docker_ping(node.socket)):
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
        raise ProviderError(f"{node.name}: dockerd did not start: {' '.join(tail)} ({log})")


def forget_endpoints(node: NodeLayout) -> None:
    """Drop dockerd's local network store from a node's restored state, before it boots.

    A checkpoint is a power cut: when it caught swarm tasks starting or stopping, the
    store still holds their endpoints with host ports. dockerd re-reserves those ports
    at boot (with a docker-proxy) for containers that no longer run, and the tasks'
    new containers then fail for good with "port is already allocated" (MinIO stayed
    down after such a restore). dockerd rebuilds the store at boot: the default bridge,
    and docker_gwbridge and the swarm's networks as soon as tasks need them.
    """
    (node.data_root / "network" / "files" / "local-kv.db").unlink(missing_ok=True)


def stop(node: NodeLayout) -> None:
    """SIGTERM (dockerd stops its containers), SIGKILL if it hangs, then leftover shims."""
    pid = read_pid(node.dockerd_pidfile)
    if pid and not kill_and_wait([pid], signal.SIGTERM, STOP_TIMEOUT):
        kill_and_wait([pid])
    kill_processes_of(node.cgroup_parent, node.exec_root)
