"""The ``local`` provider: the lab's nodes as namespaces on this host (root, Linux).

Each node is
- a network namespace on the lab bridge with the node's IP and no default route;
- a UTS namespace (its own hostname) and a private mount namespace in which
  /root, /etc/docker and registry.config_dir are the node's own directories and
  nfs.mount is the lab's shared export directory;
- its own dockerd and OpenSSH sshd, both started inside those namespaces.

SSH sessions log in as **root** (no user is added to the host) with the lab's
generated key only, see the node's hostname, and talk to that node's dockerd
through ``DOCKER_HOST``. The bridge and the image mirror are the lab's host side
(:class:`lab.host.LabHost`); this package adds the nodes:

- ``layout``: every name and path of a node; ``btrfs``: the state volume;
- ``namespaces``, ``sshd``, ``dockerd``: what a node is made of;
- ``power``: boot, power off, freeze; ``snapshots``: checkpoints; ``teardown``.

Everything is found again from the spec and those directories, never from
memory, so ``destroy`` cleans up after a failed ``up`` or a ``kill -9`` too.
Processes are only ever killed by PID.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lab.errors import ProviderError, UnknownName
from lab.host import LabHost, require_root
from lab.host.cgroups import CGROUP_PREFIX, remove_cgroup_tree
from lab.host.files import copy_tree, empty_directory
from lab.host.mounts import unmount_all_under
from lab.host.proc import docker_client, docker_ping, run
from lab.images import build_images, offline_images, phase_images, substitutes
from lab.nodes import Capabilities, NodeAccess
from lab.paths import extra_keys_file
from lab.providers.local import btrfs, dockerd, election, namespaces, power, sshd, teardown
from lab.providers.local.layout import (
    NodeLayout,
    lab_dirs,
    leftover_layouts,
    node_layouts,
)
from lab.providers.local.snapshots import SnapshotStore
from lab.secrets import ensure_secrets
from lab.spec import LabSpec

REQUIRED_TOOLS = ("dockerd", "containerd", "sshd", "docker-registry", "ip", "iptables",
                  "unshare", "nsenter", "mount", "mkfs.btrfs", "btrfs")  # fmt: skip


class LocalProvider:
    """Three (or N) nodes as namespaces with their own dockerd and sshd; see module doc."""

    name = "local"
    capabilities = Capabilities(
        ipvs=False, systemd=False, fleet=False, esp=False, lab_interface="eth0"
    )

    def __init__(self, spec: LabSpec, build: Path, *, say: Callable[[str], None] = print):
        self.spec = spec
        self.build = Path(build)
        self.say = say
        self.host = LabHost(spec, self.build)
        dirs = lab_dirs(spec, self.build)
        self.dirs = dirs
        self.state_dir = dirs.state_dir
        self.run_dir = dirs.run_dir
        self.log_dir = dirs.log_dir
        self.snapshot_dir = dirs.snapshot_dir
        self.bridge = self.host.bridge.name
        self.layouts = node_layouts(spec, dirs)
        self.snapshots = SnapshotStore(dirs.snapshot_dir, dirs.state_dir / ".trash", spec.name)

    @property
    def shared_dir(self) -> Path:
        return self.host.shared_dir

    # ------------------------------------------------------------ interface

    def nodes(self) -> list[NodeAccess]:
        key = ensure_secrets(self.build).ssh_private_key_file
        return [NodeAccess(n.name, n.ip, sshd.LOGIN_USER, key) for n in self.layouts]

    def up(self) -> None:
        """Bridge, forward rule, mirror and every node (in parallel); no swarm."""
        self.preflight()
        started = time.monotonic()
        btrfs.ensure_state_volume(self.state_dir, btrfs.state_volume(self.build))
        self.host.ensure()
        # The nodes pull only from the mirror: fill it (cached after the first time).
        build_images(self.spec, self.build, say=self.say)
        public_key = ensure_secrets(self.build).ssh_public_key + self._extra_keys()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        namespaces.private_run_dir(self.run_dir)
        self._in_parallel(lambda n: self._create_node(n, public_key), self.layouts)
        self.say(f"{len(self.layouts)} local nodes up in {time.monotonic() - started:.1f}s")
        self.seed_images()

    def seed_images(self) -> None:
        """Every node pulls the images its phases will run, as the libvirt box carries them.

        Then no phase waits for a pull, and neither does a replay: the images are in
        every checkpoint from after-nodes on. Replaying registry pulled registry:2.8.3
        on every node after the restore (6 s, while MinIO was coming back), replaying
        minio the 466 MB S3 stand-in. Swarm finds a digest-pinned image that is already
        there and does not pull it again.
        """
        started = time.monotonic()
        images = phase_images(self.spec, self.host.mirror)

        def pull_all(node: NodeLayout) -> None:
            for image in images:
                self.docker(node.name, "pull", "--quiet", image, timeout=900)

        self._in_parallel(pull_all, self.layouts)
        self.say(f"{len(images)} images on every node in {time.monotonic() - started:.1f}s")

    def destroy(self) -> None:
        """Remove every trace of the lab; safe after a partial up, a kill -9, or twice."""
        require_root(("ip", "iptables"))
        layouts = [*self.layouts, *leftover_layouts(self.spec, self.dirs, self.layouts)]
        self._in_parallel(teardown.remove_node, layouts)
        unmount_all_under(self.run_dir, self.state_dir)
        remove_cgroup_tree(f"{CGROUP_PREFIX}/{self.spec.name}")
        remove_cgroup_tree(CGROUP_PREFIX, only_if_empty=True)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        btrfs.state_volume(self.build).unlink(missing_ok=True)  # its loop device clears itself
        self.host.teardown()
        (self.build / "known_hosts").unlink(missing_ok=True)

    def status(self) -> dict[str, str]:
        return {n.name: power.status(n) for n in self.layouts}

    def snapshot_save(self, name: str) -> None:
        """One checkpoint of all nodes, cloned while every process of every node is frozen.

        Freezing instead of stopping the dockerds keeps the swarm and its services
        running, so the next phase does not wait for them to come back. The clone is
        what a power cut at that instant would leave on disk, which is what dockerd,
        containerd's bolt files and the swarm's raft log are built to recover from.
        """
        target = self.snapshots.path(name, must_exist=False)
        self._require_running()
        partial = target.with_name(target.name + ".partial")
        btrfs.remove_tree(partial)
        try:
            (partial / "nodes").mkdir(parents=True)
            with power.frozen(self.layouts):
                # In parallel: the swarm's heartbeats expire if the freeze lasts ~15 s.
                with ThreadPoolExecutor(max_workers=len(self.layouts) + 1) as pool:
                    copies = [
                        pool.submit(btrfs.clone_tree, node.state_dir, partial / "nodes" / node.name)
                        for node in self.layouts
                    ]
                    copies.append(pool.submit(copy_tree, self.shared_dir, partial / "nfs"))
                for copy in copies:
                    copy.result()
            self.snapshots.discard(target)
            partial.rename(target)
        finally:
            btrfs.remove_tree(partial)

    def snapshot_restore(self, name: str) -> None:
        """Power all nodes off, put the checkpoint's state back, boot them again."""
        source = self.snapshots.path(name, must_exist=True)
        self.preflight()
        # The state on disk is about to be replaced: no need to shut down cleanly.
        self._in_parallel(lambda node: power.power_off(node, graceful=False), self.layouts)
        for node in self.layouts:
            self.snapshots.discard(node.state_dir)
        self._in_parallel(
            lambda node: btrfs.clone_tree(source / "nodes" / node.name, node.state_dir),
            self.layouts,
        )
        for node in self.layouts:
            dockerd.forget_endpoints(node)
        empty_directory(self.shared_dir)
        for item in (source / "nfs").iterdir():
            copy_tree(item, self.shared_dir / item.name)
        # Booting waits for the swarm to elect a leader: ask for the election at once
        # (see election.py); the discarded state is deleted meanwhile.
        with ThreadPoolExecutor(max_workers=2) as helpers:
            helpers.submit(self.snapshots.empty_trash)
            helpers.submit(self._hurry_election)
            self._in_parallel(self._boot, self.layouts)

    def snapshot_list(self) -> list[str]:
        return self.snapshots.names()

    def snapshot_delete(self, name: str) -> None:
        self.snapshots.discard(self.snapshots.path(name, must_exist=True))

    def image_substitutes(self) -> tuple[str, str]:
        """(MinIO image, load balancer kind) these nodes can run (see images.substitutes)."""
        return substitutes(self.spec, self.host.mirror)

    def offline_images(self) -> dict[str, str]:
        return offline_images(self.spec, self.host.mirror)

    # ------------------------------------------------- node power (drills, tests)

    def kill_node(self, name: str) -> None:
        """Crash a node: cut its link and SIGKILL everything in it (like pulling the plug)."""
        node = self.layout(name)
        namespaces.set_link(node, up=False)
        power.power_off(node, graceful=False)

    def stop_node(self, name: str) -> None:
        """Shut a node down cleanly: dockerd stops its containers, then the node is off."""
        node = self.layout(name)
        power.power_off(node, graceful=True)
        namespaces.set_link(node, up=False)

    def start_node(self, name: str) -> None:
        """Boot a node that was stopped or killed; it rejoins its swarm by itself."""
        node = self.layout(name)
        self._boot(node)
        namespaces.set_link(node, up=True)

    def power_off(self, node: str) -> None:
        self.kill_node(node)

    def power_on(self, node: str) -> None:
        self.start_node(node)

    def docker(self, name: str, *args: str, timeout: float = 120) -> str:
        """Run the docker client on the host against a node's dockerd; stdout or ProviderError."""
        node = self.layout(name)
        return run([docker_client(), "-H", node.docker_host, *args], timeout=timeout).stdout

    def layout(self, name: str) -> NodeLayout:
        for node in self.layouts:
            if node.name == name:
                return node
        raise UnknownName(f"{name!r} is not a node of lab {self.spec.name}")

    # ------------------------------------------------------------- internals

    def preflight(self, tools: Iterable[str] = REQUIRED_TOOLS) -> None:
        require_root(tools)
        for node in self.layouts:
            node.check_socket_paths()

    def _require_running(self) -> None:
        down = [name for name, state in self.status().items() if state != "running"]
        if down:
            raise ProviderError(f"nodes not running: {', '.join(down)}: run `inv lab.up` first")

    def _create_node(self, node: NodeLayout, public_key: str) -> None:
        for directory in (node.run_dir, node.log_dir):
            directory.mkdir(parents=True, exist_ok=True)
        btrfs.make_state_dir(node.state_dir)
        namespaces.create_netns(node, self.bridge)
        namespaces.create_uts(node)
        sshd.write_node_files(node, public_key)
        self._boot(node)

    def _extra_keys(self) -> str:
        """A class trainee's key, let in beside the lab's own (see lab.classroom.access)."""
        extra = extra_keys_file(self.build)
        return "\n" + extra.read_text().strip() if extra.exists() else ""

    def _hurry_election(self) -> None:
        managers = [election.Manager(n.name, n.ip, n.data_root / "swarm") for n in self.layouts]

        def elected() -> bool:  # dockerd serves its API only once its swarm has a leader
            return any(docker_ping(n.socket, timeout=0.2) for n in self.layouts)

        election.hurry_election(managers, elected, say=self.say)

    def _boot(self, node: NodeLayout) -> None:
        power.boot(node, self.spec, self.shared_dir)

    def _in_parallel(self, action: Callable[[NodeLayout], None], nodes: list[NodeLayout]) -> None:
        """Run ``action`` for every node at once; the first failure is raised after all end."""
        if not nodes:
            return
        with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            futures = [pool.submit(action, node) for node in nodes]
        errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            raise errors[0]
