"""The ``local`` provider: the lab's nodes as namespaces on this host (root, Linux).

Each node is
- a network namespace on the lab bridge with the node's IP and no default route
  (a default route makes every pull wait for docker.io DNS timeouts);
- a UTS namespace (its own hostname) and a private mount namespace in which
  /root, /etc/docker and registry.config_dir are the node's own directories and
  nfs.mount is the lab's shared export directory;
- its own dockerd and OpenSSH sshd, both started inside those namespaces with
  ``nsenter`` (``ip netns exec`` remounts /sys and breaks dockerd).

SSH sessions log in as **root** (no user is added to the host) with the lab's
generated key only, see the node's hostname, and talk to that node's dockerd
through ``DOCKER_HOST``. Runtime files (sockets, pidfiles, namespace files,
exec-roots) live in /run/ha-registry-lab/<lab>/<node>/, persistent state
(data-roots, per-node dirs, logs, snapshots) in build/<lab>/local/.

Everything is found again from the spec and those directories, never from
memory, so ``destroy`` cleans up after a failed ``up`` or a ``kill -9`` too.
Processes are only ever killed by PID: pidfiles we wrote, and processes whose
namespaces or cgroup are the node's, or shims whose ``-address`` is under the
node's exec-root.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from lab.providers.base import Capabilities, NodeAccess, ProviderError
from lab.secrets import ensure_secrets
from lab.spec import LabSpec

RUN_ROOT = Path("/run/ha-registry-lab")
CGROUP_PREFIX = "ha-registry-lab"
LOGIN_USER = "root"
NO_IPVS_NOTICE = "no IPVS on this host: publishing with mode: host, endpoint_mode: dnsrr"
SNAPSHOT_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
CREATED_DIRS_FILE = RUN_ROOT / "created-dirs.json"
DOCKERD_READY_TIMEOUT = 60.0
DOCKERD_STOP_TIMEOUT = 30.0
FREEZE_SWEEPS = 10  # rescans for processes forked while the others were being stopped
FREEZE_TIMEOUT = 10.0
MAX_UNIX_PATH = 100  # sun_path is 108 bytes; containerd appends to the exec-root

# tool -> Debian package that provides it: a missing one is named with its fix.
REQUIRED_TOOLS = {
    "dockerd": "docker.io",
    "containerd": "containerd",
    "sshd": "openssh-server",
    "docker-registry": "docker-registry",
    "ip": "iproute2",
    "iptables": "iptables",
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "mount": "mount",
    "mkfs.btrfs": "btrfs-progs",
    "btrfs": "btrfs-progs",
}
TOOL_PATHS = {"sshd": "/usr/sbin/sshd"}  # sshd insists on being started by absolute path

_notice_printed = False


# ----------------------------------------------------------------- small helpers


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for processes we start: AWS_CA_BUNDLE breaks the registry's S3 driver."""
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env.update(extra)
    return env


def run(
    argv: list[str], *, check: bool = True, input: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a host command; a failure becomes a ProviderError with its last stderr line."""
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, input=input, timeout=timeout, env=clean_env()
        )
    except FileNotFoundError:
        raise ProviderError(f"{argv[0]} not found: {install_hint(argv[0])}") from None
    if check and proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        why = lines[-1] if lines else f"exit code {proc.returncode}"
        raise ProviderError(f"`{shlex.join(argv)}` failed: {why}")
    return proc


def install_hint(tool: str) -> str:
    package = REQUIRED_TOOLS.get(tool)
    return f"apt-get install {package}" if package else f"install {tool}"


def tool_path(tool: str) -> str:
    """Absolute path of a required tool, or a ProviderError naming the package to install."""
    fixed = TOOL_PATHS.get(tool)
    found = fixed if fixed and os.access(fixed, os.X_OK) else shutil.which(tool)
    if not found:
        raise ProviderError(f"{tool} is missing: {install_hint(tool)}")
    return found


def docker_client() -> str:
    """Debian's client (same version as the daemons) when present, else any docker on PATH."""
    if os.access("/usr/bin/docker", os.X_OK):
        return "/usr/bin/docker"
    found = shutil.which("docker")
    if not found:
        raise ProviderError("docker client is missing: apt-get install docker.io")
    return found


def short_tag(name: str, width: int) -> str:
    """``name`` if it fits in ``width`` chars, else a prefix plus a hash (stable, unique)."""
    if len(name) <= width:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:4]
    return name[: width - 4] + digest


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


def is_ns_mount(path: Path) -> bool:
    return any(point == str(path) and kind == "nsfs" for point, kind in mountinfo())


def ns_identity(path: Path) -> tuple[int, int] | None:
    """(st_dev, st_ino) of a namespace file bound at ``path``, None if nothing is bound."""
    if not is_ns_mount(path):
        return None
    st = os.stat(path)
    return (st.st_dev, st.st_ino)


def pid_alive(pid: int) -> bool:
    """True for a running process; a zombie (dead, not yet reaped) counts as gone."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own child
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def kill_and_wait(pids: Iterable[int], sig: int = signal.SIGKILL, timeout: float = 15) -> bool:
    pids = [p for p in set(pids) if p != os.getpid()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    return wait_until(lambda: not any(pid_alive(p) for p in pids), timeout)


def docker_ping(sock: Path) -> bool:
    """True when a dockerd answers on its unix socket (faster than `docker version`)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(2)
            conn.connect(str(sock))
            conn.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return conn.recv(64).startswith(b"HTTP/1.0 200") or False
    except OSError:
        return False


def tcp_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def unix_socket_answers(path: Path) -> bool:
    """Whether something accepts connections on the unix socket ``path``."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(1)
            conn.connect(str(path))
    except OSError:
        return False
    return True


def spawn(argv: list[str], log: Path) -> int:
    """Start a long-running process in its own session, output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=clean_env(),
        )
    return proc.pid


def copy_tree(source: Path, target: Path) -> None:
    """``cp -a --reflink=auto``: a cheap clone where the filesystem allows, a copy elsewhere."""
    run(["cp", "-a", "--reflink=auto", "--sparse=always", str(source), str(target)], timeout=1800)


def on_btrfs(path: Path) -> bool:
    return run(["stat", "-f", "-c", "%T", str(path)]).stdout.strip() == "btrfs"


def is_subvolume(path: Path) -> bool:
    """A btrfs subvolume's root directory always has inode 256."""
    return path.is_dir() and not path.is_symlink() and path.stat().st_ino == 256 and on_btrfs(path)


def make_state_dir(path: Path) -> None:
    """A node's state directory: a btrfs subvolume where it can be, so it snapshots at once."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if on_btrfs(path.parent):
        run(["btrfs", "-q", "subvolume", "create", str(path)])
    else:
        path.mkdir()


def clone_tree(source: Path, target: Path) -> None:
    """A subvolume is snapshotted (constant time, however many files); anything else copied."""
    if is_subvolume(source):
        run(["btrfs", "-q", "subvolume", "snapshot", str(source), str(target)])
    else:
        copy_tree(source, target)


def remove_tree(path: Path, depth: int = 4) -> None:
    """rmtree, but btrfs subvolumes within ``depth`` levels go whole instead of file by file."""
    if not path.exists():
        return
    for subvolume in _subvolumes_under(path, depth):
        run(["btrfs", "-q", "subvolume", "delete", str(subvolume)])
    shutil.rmtree(path, ignore_errors=True)


def _subvolumes_under(path: Path, depth: int) -> list[Path]:
    if is_subvolume(path):
        return [path]
    if depth == 0 or not path.is_dir() or path.is_symlink():
        return []
    return [sub for child in path.iterdir() for sub in _subvolumes_under(child, depth - 1)]


# ------------------------------------------------------ directories we create


_created_lock = threading.Lock()


STATE_VOLUME_SIZE = "200G"  # sparse: only what the lab writes takes disk space


def mount_state_volume(image: Path, mount_point: Path) -> None:
    """A sparse btrfs file mounted over ``mount_point``: checkpoints become snapshots.

    On ext4 every checkpoint copied each node's whole image store (gigabytes,
    tens of seconds). XFS reflinks share the blocks but still clone ~30,000
    files per node, 4-8 s with the nodes frozen; a btrfs snapshot of a node's
    subvolume takes the same fraction of a second whatever it holds. An older
    lab's XFS volume (``local.xfs``) keeps working with reflink copies.
    """
    if not image.exists():
        run(["truncate", "-s", STATE_VOLUME_SIZE, str(image)])
        run([tool_path("mkfs.btrfs"), "-q", str(image)])
    mount_point.mkdir(parents=True, exist_ok=True)
    run(["mount", "-o", "loop", str(image), str(mount_point)])


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


# --------------------------------------------------------------------- layout


@dataclass(frozen=True)
class NodeLayout:
    """Every name and path that belongs to one node, derived from the spec alone."""

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


# -------------------------------------------------------------------- provider


class LocalProvider:
    """Three (or N) nodes as namespaces with their own dockerd and sshd; see module doc."""

    name = "local"
    capabilities = Capabilities(ipvs=False, systemd=False, fleet=False)

    def __init__(self, spec: LabSpec, build: Path, *, say: Callable[[str], None] = print):
        self.spec = spec
        self.build = Path(build)
        self.say = say
        self.state_dir = self.build / "local"
        self.run_dir = RUN_ROOT / spec.name
        self.log_dir = self.state_dir / "logs"
        self.snapshot_dir = self.state_dir / "snapshots"
        self.bridge = f"hrl-{short_tag(spec.name, 11)}"
        net = spec.network
        self.layouts = [
            NodeLayout(
                lab=spec.name,
                name=node.name,
                ip=node.ip,
                prefixlen=net.prefixlen,
                index=i,
                run_dir=self.run_dir / node.name,
                state_dir=self.state_dir / "nodes" / node.name,
                log_dir=self.log_dir,
            )
            for i, node in enumerate(spec.nodes, start=1)
        ]

    # ------------------------------------------------------------ interface

    def nodes(self) -> list[NodeAccess]:
        key = ensure_secrets(self.build).ssh_private_key_file
        return [NodeAccess(n.name, n.ip, LOGIN_USER, key) for n in self.layouts]

    def up(self) -> None:
        """Bridge, forward rule, mirror and every node (in parallel); no swarm."""
        self.preflight()
        self.print_ipvs_notice()
        started = time.monotonic()
        self._ensure_state_volume()
        self.ensure_network()
        self.mirror().ensure_running()
        # The nodes pull only from the mirror: fill it (cached after the first time).
        from lab.images import build_images

        build_images(self.spec, self.build, say=self.say)
        public_key = ensure_secrets(self.build).ssh_public_key
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._private_run_dir()
        self._in_parallel(lambda n: self._create_node(n, public_key), self.layouts)
        self.say(f"{len(self.layouts)} local nodes up in {time.monotonic() - started:.1f}s")

    def destroy(self) -> None:
        """Remove every trace of the lab; safe after a partial up, a kill -9, or twice."""
        self.preflight(tools=("ip", "iptables"))
        layouts = self._all_layouts()
        self._in_parallel(self._remove_node, layouts)
        self.mirror().stop()
        self._remove_network()
        for point in mounts_under(self.run_dir, self.state_dir):
            run(["umount", "-l", point], check=False)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        remove_cgroup_tree(f"{CGROUP_PREFIX}/{self.spec.name}")
        remove_cgroup_tree(CGROUP_PREFIX, only_if_empty=True)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self.state_volume.unlink(missing_ok=True)  # its loop device clears itself on umount
        self._empty_nfs_export()
        (self.build / "known_hosts").unlink(missing_ok=True)
        remove_created_dirs_if_last()

    def status(self) -> dict[str, str]:
        return {n.name: self._node_status(n) for n in self.layouts}

    def snapshot_save(self, name: str) -> None:
        """One checkpoint of all nodes, cloned while every process of every node is frozen.

        Freezing instead of stopping the dockerds keeps the swarm and its services
        running, so the next phase does not wait for them to come back. The clone is
        what a power cut at that instant would leave on disk, which is what dockerd,
        containerd's bolt files and the swarm's raft log are built to recover from.
        """
        target = self._snapshot_path(name, must_exist=False)
        self._require_running()
        partial = target.with_name(target.name + ".partial")
        remove_tree(partial)
        try:
            (partial / "nodes").mkdir(parents=True)
            with self._frozen(self.layouts):
                # In parallel: the swarm's heartbeats expire if the freeze lasts ~15 s.
                with ThreadPoolExecutor(max_workers=len(self.layouts) + 1) as pool:
                    copies = [
                        pool.submit(clone_tree, node.state_dir, partial / "nodes" / node.name)
                        for node in self.layouts
                    ]
                    copies.append(pool.submit(copy_tree, self.nfs_export, partial / "nfs"))
                for copy in copies:
                    copy.result()
            self._discard(target)
            partial.rename(target)
        finally:
            remove_tree(partial)

    def snapshot_restore(self, name: str) -> None:
        """Power all nodes off, put the checkpoint's state back, boot them again."""
        source = self._snapshot_path(name, must_exist=True)
        self.preflight()
        # The state on disk is about to be replaced: no need to shut down cleanly.
        self._in_parallel(lambda node: self._power_off(node, graceful=False), self.layouts)
        for node in self.layouts:
            self._discard(node.state_dir)
        self._in_parallel(
            lambda node: clone_tree(source / "nodes" / node.name, node.state_dir), self.layouts
        )
        self._empty_nfs_export()
        for item in (source / "nfs").iterdir():
            copy_tree(item, self.nfs_export / item.name)
        # Booting waits mostly for the swarm to elect a leader (10-20 s of idle CPU):
        # the discarded state is deleted meanwhile.
        with ThreadPoolExecutor(max_workers=1) as cleaner:
            cleaner.submit(self._empty_trash)
            self._in_parallel(self._boot, self.layouts)

    def snapshot_list(self) -> list[str]:
        if not self.snapshot_dir.exists():
            return []
        return sorted(
            p.name
            for p in self.snapshot_dir.iterdir()
            if p.is_dir() and not p.name.endswith(".partial") and not p.name.startswith(".")
        )

    def snapshot_delete(self, name: str) -> None:
        self._discard(self._snapshot_path(name, must_exist=True))

    def image_substitutes(self) -> tuple[str, str]:
        """(MinIO image, load balancer kind) the nodes can run: MinIO and Traefik only if
        an instructor loaded them into the mirror (`inv lab.images --load`), else the
        moto S3 stand-in and HAProxy."""
        from lab.images import S3_STANDIN

        mirror = self.mirror()
        minio = self.spec.minio.image
        if mirror.labels(minio) is None:
            minio = S3_STANDIN
        kind = self.spec.loadbalancer.kind
        if kind == "traefik" and mirror.labels(self.spec.loadbalancer.traefik_image) is None:
            kind = "haproxy"
        return minio, kind

    # ------------------------------------------------- node lifecycle (public)

    def kill_node(self, name: str) -> None:
        """Crash a node: cut its link and SIGKILL everything in it (like pulling the plug)."""
        node = self.layout(name)
        run(["ip", "link", "set", node.veth, "down"], check=False)
        self._power_off(node, graceful=False)

    def stop_node(self, name: str) -> None:
        """Shut a node down cleanly: dockerd stops its containers, then the node is off."""
        node = self.layout(name)
        self._power_off(node, graceful=True)
        run(["ip", "link", "set", node.veth, "down"], check=False)

    def start_node(self, name: str) -> None:
        """Boot a node that was stopped or killed; it rejoins its swarm by itself."""
        self._boot(self.layout(name))

    def docker(self, name: str, *args: str, timeout: float = 120) -> str:
        """Run the docker client on the host against a node's dockerd; stdout or ProviderError."""
        node = self.layout(name)
        argv = [docker_client(), "-H", node.docker_host, *args]
        return run(argv, timeout=timeout).stdout

    def layout(self, name: str) -> NodeLayout:
        for node in self.layouts:
            if node.name == name:
                return node
        raise ProviderError(f"{name!r} is not a node of lab {self.spec.name}")

    def mirror(self):  # -> lab.images.Mirror (imported late: images uses this module)
        from lab.images import Mirror

        return Mirror(self.spec, self.run_dir, self.log_dir)

    @property
    def nfs_export(self) -> Path:
        export = Path(self.spec.nfs.export)
        return export if export.is_absolute() else self.build / export

    # ------------------------------------------------------------- checks

    def preflight(self, tools: Iterable[str] = tuple(REQUIRED_TOOLS)) -> None:
        if not sys.platform.startswith("linux"):
            raise ProviderError("the local provider needs Linux: use the vagrant provider")
        if os.geteuid() != 0:
            raise ProviderError("the local provider needs root: run it as root (sudo -E inv ...)")
        for tool in tools:
            tool_path(tool)
        for node in self.layouts:
            longest = node.exec_root / "containerd" / "containerd-debug.sock"
            if len(str(longest)) > MAX_UNIX_PATH:
                raise ProviderError(
                    f"socket path {longest} is too long: shorten the lab name or node names"
                )

    def print_ipvs_notice(self) -> None:
        global _notice_printed
        if not _notice_printed:
            self.say(NO_IPVS_NOTICE)
            _notice_printed = True

    # ------------------------------------------------------------- network

    def _forward_rule(self) -> list[str]:
        comment = f"ha-registry-lab {self.spec.name}"
        return ["FORWARD", "-i", self.bridge, "-o", self.bridge,
                "-m", "comment", "--comment", comment, "-j", "ACCEPT"]  # fmt: skip

    def ensure_network(self) -> None:
        """The lab bridge with the host's lab address, and the FORWARD accept rule."""
        self.preflight(tools=("ip", "iptables"))
        net = self.spec.network
        if run(["ip", "link", "show", self.bridge], check=False).returncode != 0:
            run(["ip", "link", "add", self.bridge, "type", "bridge"])
        address = f"{net.host}/{net.prefixlen}"
        shown = run(["ip", "-o", "addr", "show", "dev", self.bridge]).stdout
        if f" {address} " not in shown:
            run(["ip", "addr", "add", address, "dev", self.bridge])
        run(["ip", "link", "set", self.bridge, "up"])
        # bridged frames pass iptables (br_netfilter) and FORWARD may default to DROP
        if run(["iptables", "-C", *self._forward_rule()], check=False).returncode != 0:
            run(["iptables", "-I", *self._forward_rule()])

    def _remove_network(self) -> None:
        while run(["iptables", "-D", *self._forward_rule()], check=False).returncode == 0:
            pass
        if run(["ip", "link", "show", self.bridge], check=False).returncode == 0:
            run(["ip", "link", "del", self.bridge])

    # ------------------------------------------------------- node creation

    def _create_node(self, node: NodeLayout, public_key: str) -> None:
        for directory in (node.run_dir, node.log_dir):
            directory.mkdir(parents=True, exist_ok=True)
        make_state_dir(node.state_dir)
        self._create_netns(node)
        self._create_uts(node)
        self._write_node_files(node, public_key)
        self._boot(node)

    def _private_run_dir(self) -> None:
        """Namespace files may only be bound on a private mount: make the lab's run dir one."""
        if str(self.run_dir) not in {point for point, _ in mountinfo()}:
            run(["mount", "--bind", str(self.run_dir), str(self.run_dir)])
        run(["mount", "--make-private", str(self.run_dir)])

    def _create_netns(self, node: NodeLayout) -> None:
        if not node.netns_file.exists():
            note_netns_mount()
            run(["ip", "netns", "add", node.netns])
        if run(["ip", "link", "show", node.veth], check=False).returncode != 0:
            run(["ip", "link", "add", node.veth, "type", "veth", "peer", "name", "eth0",
                 "netns", node.netns])  # fmt: skip
        run(["ip", "link", "set", node.veth, "master", self.bridge])
        in_ns = ["ip", "-n", node.netns]
        address = f"{node.ip}/{node.prefixlen}"
        if f" {address} " not in run([*in_ns, "-o", "addr", "show", "dev", "eth0"]).stdout:
            run([*in_ns, "addr", "add", address, "dev", "eth0"])
        run([*in_ns, "link", "set", "lo", "up"])
        run([*in_ns, "link", "set", "eth0", "up"])
        # deliberately no default route (see module doc)

    def _create_uts(self, node: NodeLayout) -> None:
        if not is_ns_mount(node.uts_file):
            node.uts_file.touch()
            run(["unshare", f"--uts={node.uts_file}", "hostname", node.name])

    def _write_node_files(self, node: NodeLayout, public_key: str) -> None:
        node.authorized_keys.write_text(public_key.strip() + "\n")
        node.authorized_keys.chmod(0o600)
        for sub in ("root", "etc-docker", "registry-config"):
            (node.private_dir / sub).mkdir(parents=True, exist_ok=True)
        (node.private_dir / "root").chmod(0o700)
        node.daemon_json.write_text("{}\n")  # keep any host /etc/docker/daemon.json out
        node.sshd_dir.mkdir(parents=True, exist_ok=True)
        host_key = node.sshd_dir / "ssh_host_ed25519_key"
        if not host_key.exists():
            _write_host_key(host_key, comment=f"root@{node.name}")
        (node.sshd_dir / "sshd_config").write_text(self._sshd_config(node, host_key))

    def _sshd_config(self, node: NodeLayout, host_key: Path) -> str:
        return "\n".join(
            [
                f"ListenAddress {node.ip}:22",
                f"HostKey {host_key}",
                f"PidFile {node.sshd_pidfile}",
                f"AuthorizedKeysFile {node.authorized_keys}",
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "PrintMotd no",
                "X11Forwarding no",
                f"SetEnv DOCKER_HOST={node.docker_host}",
                "Subsystem sftp /usr/lib/openssh/sftp-server",
                "",
            ]
        )

    # --------------------------------------------------- boot / power off

    def _private_binds(self, node: NodeLayout) -> list[tuple[Path, str]]:
        """(host source, path inside the node): what makes the node's files its own."""
        binds = [
            (node.private_dir / "root", "/root"),
            (node.private_dir / "etc-docker", "/etc/docker"),
        ]
        config_dir = self.spec.registry.config_dir.rstrip("/")
        if not (config_dir + "/").startswith("/etc/docker/"):
            binds.append((node.private_dir / "registry-config", config_dir))
        binds += [
            (self.nfs_export, self.spec.nfs.mount),
            (node.containerd_run, "/run/containerd"),
            (node.sshd_privsep, "/run/sshd"),
        ]
        return binds

    def _create_mount_ns(self, node: NodeLayout) -> None:
        """A private mount namespace for the node, bound at ``mnt_file``."""
        if is_ns_mount(node.mnt_file):
            return
        binds = self._private_binds(node)
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

    def _enter(self, node: NodeLayout) -> list[str]:
        return [
            "nsenter",
            f"--net={node.netns_file}",
            f"--uts={node.uts_file}",
            f"--mount={node.mnt_file}",
            "--",
        ]

    def _boot(self, node: NodeLayout) -> None:
        if not node.netns_file.exists() or not is_ns_mount(node.uts_file):
            raise ProviderError(f"{node.name} has no namespaces: run `inv lab.up` first")
        node.containerd_run.mkdir(parents=True, exist_ok=True)
        self._create_mount_ns(node)
        run(["ip", "link", "set", node.veth, "up"])
        self._start_sshd(node)
        self._start_dockerd(node)

    def _start_sshd(self, node: NodeLayout) -> None:
        if read_pid(node.sshd_pidfile):
            return
        config = node.sshd_dir / "sshd_config"
        log = node.log_dir / f"{node.name}-sshd.log"
        argv = [*self._enter(node), tool_path("sshd"), "-D", "-f", str(config), "-E", str(log)]
        pid = spawn(argv, log)
        node.sshd_pidfile.write_text(str(pid))
        if not wait_until(lambda: tcp_open(node.ip, 22), 15):
            raise ProviderError(f"{node.name}: sshd did not listen on {node.ip}:22, see {log}")

    def dockerd_argv(self, node: NodeLayout) -> list[str]:
        mirror = self.spec.mirror
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
            "--registry-mirror", f"http://{mirror}",
            # As the rendered daemon.json: the whole lab network is plain HTTP
            # (mirror, every node's registry, the load balancer).
            "--insecure-registry", self.spec.network.subnet,
            "--shutdown-timeout", "5",
        ]  # fmt: skip

    def _start_dockerd(self, node: NodeLayout) -> None:
        if read_pid(node.dockerd_pidfile) and docker_ping(node.socket):
            return
        log = node.log_dir / f"{node.name}-dockerd.log"
        pid = spawn([*self._enter(node), *self.dockerd_argv(node)], log)
        ready = wait_until(lambda: docker_ping(node.socket) or not pid_alive(pid),
                           DOCKERD_READY_TIMEOUT)  # fmt: skip
        if not (ready and docker_ping(node.socket)):
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            raise ProviderError(f"{node.name}: dockerd did not start: {' '.join(tail)} ({log})")

    def _stop_dockerd(self, node: NodeLayout) -> None:
        pid = read_pid(node.dockerd_pidfile)
        if pid and not kill_and_wait([pid], signal.SIGTERM, DOCKERD_STOP_TIMEOUT):
            kill_and_wait([pid])
        self._kill_leftover_shims(node)

    def _kill_leftover_shims(self, node: NodeLayout) -> None:
        kill_processes_of(node.cgroup_parent, node.exec_root)

    def _power_off(self, node: NodeLayout, graceful: bool = True) -> None:
        """Stop every process of the node and release its mount namespace."""
        if graceful:
            self._stop_dockerd(node)
        for _ in range(5):  # a dying dockerd may still spawn a shim: sweep until empty
            pids = self._node_pids(node)
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

    @contextlib.contextmanager
    def _frozen(self, nodes: list[NodeLayout]) -> Iterator[None]:
        """SIGSTOP every process of ``nodes`` (and what they fork meanwhile); SIGCONT after."""
        stopped: set[int] = set()
        try:
            for _ in range(FREEZE_SWEEPS):
                found = set().union(*(self._node_pids(node) for node in nodes)) - stopped
                if not found:
                    break
                for pid in found:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGSTOP)
                stopped |= found
            else:
                raise ProviderError("the nodes kept starting processes: could not freeze them")
            # A process stops only when its current system call returns: wait for all.
            if not wait_until(lambda: all(map(_stopped_or_gone, stopped)), FREEZE_TIMEOUT):
                raise ProviderError("some node processes did not stop for the checkpoint")
            yield
        finally:
            for pid in stopped:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    def _node_pids(self, node: NodeLayout) -> set[int]:
        """Every process that belongs to the node, by namespace, cgroup, pidfile or shim."""
        namespaces = {
            ident for ident in (ns_identity(node.mnt_file), ns_identity(node.netns_file)) if ident
        }
        pids = {p for p in (read_pid(node.dockerd_pidfile), read_pid(node.sshd_pidfile)) if p}
        for pid in _all_pids():
            if pid == os.getpid():
                continue
            if (
                _in_namespaces(pid, namespaces)
                or _in_cgroup(pid, node.cgroup_parent)
                or _is_shim_of(pid, node.exec_root)
            ):
                pids.add(pid)
        return {p for p in pids if pid_alive(p)}

    def _remove_node(self, node: NodeLayout) -> None:
        self._power_off(node, graceful=False)
        for ns_file in (node.mnt_file, node.uts_file):
            for point in mounts_under(ns_file):
                run(["umount", "-l", point], check=False)
        for point in mounts_under(node.run_dir, node.state_dir):
            run(["umount", "-l", point], check=False)
        if node.netns_file.exists() or node.netns in run(["ip", "netns", "list"]).stdout.split():
            run(["ip", "netns", "del", node.netns], check=False)
        if run(["ip", "link", "show", node.veth], check=False).returncode == 0:
            run(["ip", "link", "del", node.veth], check=False)

    def _all_layouts(self) -> list[NodeLayout]:
        """The spec's nodes plus any node dir left from an older version of the spec."""
        known = {n.name for n in self.layouts}
        extra = []
        if self.run_dir.is_dir():
            for i, path in enumerate(sorted(self.run_dir.iterdir()), start=len(known) + 1):
                if path.is_dir() and path.name not in known and (path / "uts").exists():
                    extra.append(
                        NodeLayout(self.spec.name, path.name, "0.0.0.0", 32, i, path,
                                   self.state_dir / "nodes" / path.name, self.log_dir)
                    )  # fmt: skip
        return [*self.layouts, *extra]

    def _node_status(self, node: NodeLayout) -> str:
        if not node.netns_file.exists():
            return "absent"
        dockerd = read_pid(node.dockerd_pidfile) is not None and docker_ping(node.socket)
        sshd = read_pid(node.sshd_pidfile) is not None
        if dockerd and sshd:
            return "running"
        return "stopped" if not (dockerd or sshd) else "degraded"

    @property
    def state_volume(self) -> Path:
        older = self.build / "local.xfs"  # labs made before the btrfs volume
        return older if older.exists() else self.build / "local.btrfs"

    def _ensure_state_volume(self) -> None:
        """Node state on a btrfs volume, so a checkpoint is a snapshot per node."""
        if os.path.ismount(self.state_dir):
            return
        if self.state_volume.exists():
            mount_state_volume(self.state_volume, self.state_dir)  # e.g. after a reboot
            return
        if self.state_dir.exists() and any(self.state_dir.iterdir()):
            return  # a lab made before state volumes: keep it as it is
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not on_btrfs(self.state_dir):
            mount_state_volume(self.state_volume, self.state_dir)

    def _require_running(self) -> None:
        down = [name for name, state in self.status().items() if state != "running"]
        if down:
            raise ProviderError(f"nodes not running: {', '.join(down)}: run `inv lab.up` first")

    # ------------------------------------------------------------ snapshots

    def _snapshot_path(self, name: str, *, must_exist: bool) -> Path:
        if not name or not set(name) <= SNAPSHOT_NAME_CHARS or name.startswith("."):
            raise ProviderError(f"{name!r} is not a snapshot name (letters, digits, . _ -)")
        path = self.snapshot_dir / name
        if must_exist and not path.is_dir():
            known = ", ".join(self.snapshot_list()) or "none"
            raise ProviderError(f"no snapshot {name!r} of lab {self.spec.name} (have: {known})")
        return path

    @property
    def trash_dir(self) -> Path:
        return self.state_dir / ".trash"

    def _discard(self, path: Path) -> None:
        """Move ``path`` aside at once; deleting its ~30,000 files per node waits for
        :meth:`_empty_trash` (during the next restore's boot, or destroy)."""
        if not path.exists():
            return
        self.trash_dir.mkdir(parents=True, exist_ok=True)
        path.rename(self.trash_dir / f"{path.name}.{time.time_ns()}")

    def _empty_trash(self) -> None:
        remove_tree(self.trash_dir)

    def _empty_nfs_export(self) -> None:
        export = self.nfs_export
        if not export.is_dir():
            return
        for item in export.iterdir():
            if item.is_dir() and not item.is_symlink():
                shutil.rmtree(item)
            else:
                item.unlink()

    # ---------------------------------------------------------------- misc

    def _in_parallel(self, action: Callable[[NodeLayout], None], nodes: list[NodeLayout]) -> None:
        """Run ``action`` for every node at once; the first failure is raised after all end."""
        if not nodes:
            return
        with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            futures = [pool.submit(action, node) for node in nodes]
        errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            raise errors[0]


# ------------------------------------------------------------ process scanning


def kill_processes_of(cgroup_parent: str, exec_root: Path) -> None:
    """SIGKILL the containers (by cgroup) and shims (by -address) a dockerd left behind."""
    pids = [p for p in _all_pids() if _in_cgroup(p, cgroup_parent) or _is_shim_of(p, exec_root)]
    children = [c for p in pids for c in _children(p)]
    kill_and_wait(children + pids)


def remove_cgroup_tree(relative: str, only_if_empty: bool = False) -> None:
    """rmdir a cgroup subtree in every hierarchy, deepest first (cgroups cannot be rm -r'd)."""
    for root in _cgroup_roots():
        top = root / relative
        if not top.is_dir():
            continue
        dirs = [top] if only_if_empty else [top, *[p for p in top.rglob("*") if p.is_dir()]]
        for directory in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            # a cgroup whose last task just died can stay busy for a moment
            wait_until(lambda d=directory: _try_rmdir(d), 5, 0.1)


def _all_pids() -> Iterator[int]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            yield int(entry)


def _in_namespaces(pid: int, namespaces: set[tuple[int, int]]) -> bool:
    for kind in ("mnt", "net"):
        try:
            st = os.stat(f"/proc/{pid}/ns/{kind}")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in namespaces:
            return True
    return False


def _in_cgroup(pid: int, cgroup_parent: str) -> bool:
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        path = line.split(":", 2)[-1]
        if path == cgroup_parent or path.startswith(cgroup_parent + "/"):
            return True
    return False


def _is_shim_of(pid: int, exec_root: Path) -> bool:
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


def _stopped_or_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("T", "t", "Z", "X")


def _children(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            children += [int(c) for c in task.read_text().split()]
    return children


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


def _write_host_key(path: Path, comment: str) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    path.with_name(path.name + ".pub").write_bytes(public + f" {comment}\n".encode())
