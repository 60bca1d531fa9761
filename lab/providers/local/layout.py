"""Every name and path that belongs to one local node, derived from the spec alone.

Runtime files (sockets, pidfiles, namespace files, exec-roots) live in
``/run/ha-registry-lab/<lab>/<node>/``, persistent state (data-roots, per-node dirs,
snapshots) in ``build/<lab>/local/``: a node is found again after a kill -9.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lab.errors import ProviderError
from lab.host.bridge import short_tag
from lab.host.cgroups import CGROUP_PREFIX
from lab.host.mounts import RUN_ROOT
from lab.spec import LabSpec

MAX_UNIX_PATH = 100  # sun_path is 108 bytes; containerd appends to the exec-root


@dataclass(frozen=True)
class NodeLayout:
    """Every name and path that belongs to one node."""

    lab: str
    name: str
    ip: str
    prefixlen: int
    index: int
    run_dir: Path
    state_dir: Path
    log_dir: Path

    @property
    def netns(self) -> str:
        return f"hrl-{self.lab}-{self.name}"

    @property
    def netns_file(self) -> Path:
        return Path("/run/netns") / self.netns

    @property
    def veth(self) -> str:
        return f"{short_tag(self.lab, 9)}-n{self.index}"

    @property
    def uts_file(self) -> Path:
        return self.run_dir / "uts"

    @property
    def mnt_file(self) -> Path:
        return self.run_dir / "mnt"

    @property
    def socket(self) -> Path:
        return self.run_dir / "docker.sock"

    @property
    def exec_root(self) -> Path:
        return self.run_dir / "x"

    @property
    def containerd_run(self) -> Path:
        """Bound over /run/containerd in the node: shim sockets stay per node."""
        return self.run_dir / "containerd"

    @property
    def sshd_privsep(self) -> Path:
        return self.run_dir / "sshd-privsep"

    @property
    def dockerd_pidfile(self) -> Path:
        return self.run_dir / "docker.pid"

    @property
    def sshd_pidfile(self) -> Path:
        return self.run_dir / "sshd.pid"

    @property
    def authorized_keys(self) -> Path:
        return self.run_dir / "authorized_keys"

    @property
    def data_root(self) -> Path:
        return self.state_dir / "docker"

    @property
    def private_dir(self) -> Path:
        return self.state_dir / "private"

    @property
    def sshd_dir(self) -> Path:
        return self.state_dir / "sshd"

    @property
    def daemon_json(self) -> Path:
        return self.state_dir / "daemon.json"

    @property
    def cgroup_parent(self) -> str:
        return f"/{CGROUP_PREFIX}/{self.lab}/{self.name}"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    def check_socket_paths(self) -> None:
        longest = self.exec_root / "containerd" / "containerd-debug.sock"
        if len(str(longest)) > MAX_UNIX_PATH:
            raise ProviderError(
                f"socket path {longest} is too long: shorten the lab name or node names"
            )


@dataclass(frozen=True)
class LabDirs:
    """The local provider's directories of one lab."""

    run_dir: Path  # RUN_ROOT/<lab>
    state_dir: Path  # build/<lab>/local (a btrfs volume where possible)
    log_dir: Path

    @property
    def nodes_dir(self) -> Path:
        return self.state_dir / "nodes"

    @property
    def snapshot_dir(self) -> Path:
        return self.state_dir / "snapshots"


def lab_dirs(spec: LabSpec, build: Path) -> LabDirs:
    state_dir = Path(build) / "local"
    return LabDirs(run_dir=RUN_ROOT / spec.name, state_dir=state_dir, log_dir=state_dir / "logs")


def node_layouts(spec: LabSpec, dirs: LabDirs) -> list[NodeLayout]:
    net = spec.network
    return [
        NodeLayout(
            lab=spec.name,
            name=node.name,
            ip=node.ip,
            prefixlen=net.prefixlen,
            index=i,
            run_dir=dirs.run_dir / node.name,
            state_dir=dirs.nodes_dir / node.name,
            log_dir=dirs.log_dir,
        )
        for i, node in enumerate(spec.nodes, start=1)
    ]


def leftover_layouts(spec: LabSpec, dirs: LabDirs, known: list[NodeLayout]) -> list[NodeLayout]:
    """Node dirs left from an older version of the spec (a node renamed or removed)."""
    names = {n.name for n in known}
    extra = []
    if dirs.run_dir.is_dir():
        for i, path in enumerate(sorted(dirs.run_dir.iterdir()), start=len(names) + 1):
            if path.is_dir() and path.name not in names and (path / "uts").exists():
                extra.append(
                    NodeLayout(spec.name, path.name, "0.0.0.0", 32, i, path,
                               dirs.nodes_dir / path.name, dirs.log_dir)
                )  # fmt: skip
    return extra
