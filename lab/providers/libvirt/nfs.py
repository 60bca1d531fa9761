"""The lab's NFS export served from userspace: nfs-ganesha (and rpcbind) on the lab bridge.

The libvirt path needs a shared directory that survives VM snapshots. Vagrant's NFS
synced folders need the host kernel's nfsd, which hosts such as CI VMs lack; 9p
(QEMU's own file server) forbids snapshots of running VMs while the guest has it
mounted. nfs-ganesha is an NFS server in userspace: NFSv3 (stateless, so a guest
rolled back to an older snapshot simply carries on), bound to the host's lab address
only, exporting the lab's directory with root squashing off, as Vagrant's exports do.

ganesha registers its programs with rpcbind and will not start without one; the
kit starts rpcbind only if none answers and stops only the one it started. All
processes are started detached, recorded by PID and killed by PID.
"""

from __future__ import annotations

import shutil
import signal
import socket
from collections.abc import Callable
from pathlib import Path

from lab.errors import ProviderError
from lab.host.proc import (
    kill_and_wait,
    pid_alive,
    pid_runs,
    read_pid,
    spawn,
    unix_socket_answers,
    wait_until,
)
from lab.paths import nfs_export_path
from lab.render import USERSPACE_MOUNT_PORT, USERSPACE_NFS_PORT
from lab.spec import LabSpec

INSTALL_HINT = "apt-get install -y --no-install-recommends nfs-ganesha nfs-ganesha-vfs rpcbind"
GANESHA = "/usr/bin/ganesha.nfsd"
RPCBIND = "/usr/sbin/rpcbind"
RPCBIND_SOCKET = Path("/run/rpcbind.sock")
START_TIMEOUT = 30.0


def ganesha_config(spec: LabSpec, export: Path, recovery: Path) -> str:
    """ganesha.conf for the lab: NFSv3 over TCP on the host's lab address only."""
    host = spec.network.host
    return f"""\
NFS_CORE_PARAM {{
  Bind_addr = {host};
  NFS_Port = {USERSPACE_NFS_PORT};
  MNT_Port = {USERSPACE_MOUNT_PORT};
  Protocols = 3;
  Enable_NLM = false;
  Enable_RQUOTA = false;
  Enable_UDP = false;
}}
NFSv4 {{ Graceless = true; RecoveryBackend = fs; RecoveryRoot = {recovery}; }}
EXPORT_DEFAULTS {{ Access_Type = None; }}
EXPORT {{
  Export_Id = 1;
  Path = {export};
  Pseudo = {export};
  Protocols = 3;
  Transports = TCP;
  SecType = sys;
  Squash = No_Root_Squash;
  # the kit rewrites the directory while the VMs are paused: no stale attributes
  Attr_Expiration_Time = 0;
  CLIENT {{ Clients = {spec.network.subnet}; Access_Type = RW; }}
  FSAL {{ Name = VFS; }}
}}
"""


class UserspaceNfs:
    """nfs-ganesha serving ``build/<lab>/<nfs.export>`` to the lab network."""

    def __init__(self, spec: LabSpec, build: Path):
        self.spec = spec
        self.export = nfs_export_path(spec, Path(build))
        self.dir = Path(build) / "nfs-server"
        self.pidfile = self.dir / "ganesha.pid"
        self.rpcbind_pidfile = self.dir / "rpcbind.pid"
        self.log = self.dir / "ganesha.log"

    def ensure_running(self) -> None:
        if self._pid() is not None and self._answers():
            return
        for tool in (GANESHA, RPCBIND):
            if not Path(tool).exists():
                raise ProviderError(f"{Path(tool).name} is missing: {INSTALL_HINT}")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.export.mkdir(parents=True, exist_ok=True)
        self._ensure_rpcbind()
        recovery = self.dir / "recovery"
        recovery.mkdir(exist_ok=True)
        config = self.dir / "ganesha.conf"
        config.write_text(ganesha_config(self.spec, self.export.resolve(), recovery))
        argv = [GANESHA, "-F", "-f", str(config), "-L", str(self.log), "-N", "NIV_EVENT",
                "-p", str(self.dir / "ganesha.nfsd.pid")]  # fmt: skip
        pid = spawn(argv, self.dir / "ganesha.out")
        self.pidfile.write_text(f"{pid}\n")
        if not wait_until(lambda: self._answers() or not pid_alive(pid), START_TIMEOUT, 0.2):
            raise ProviderError(f"nfs-ganesha did not listen in {START_TIMEOUT:.0f}s: {self.log}")
        if not self._answers():
            raise ProviderError(f"nfs-ganesha exited at start: see {self.log}")

    def restart_with(self, change: Callable[[], None]) -> None:
        """Stop the server, ``change`` the directory, start a fresh one (no stale caches)."""
        self._stop_ganesha()
        change()
        self.ensure_running()

    def stop(self) -> None:
        self._stop_ganesha()
        pid = read_pid(self.rpcbind_pidfile)
        ours = pid is not None and pid_runs(pid, "rpcbind")
        if ours and not self._other_ganesha_running():
            if not kill_and_wait([pid], signal.SIGTERM, 10):  # type: ignore[list-item]
                kill_and_wait([pid])  # type: ignore[list-item]
            ours = False
        if not ours:
            self.rpcbind_pidfile.unlink(missing_ok=True)
        shutil.rmtree(self.dir / "recovery", ignore_errors=True)

    def status(self) -> dict[str, object]:
        return {"pid": self._pid(), "answers": self._answers(), "export": str(self.export)}

    # ----------------------------------------------------------------- internals

    def _pid(self) -> int | None:
        pid = read_pid(self.pidfile)
        return pid if pid is not None and pid_runs(pid, "ganesha.nfsd") else None

    def _stop_ganesha(self) -> None:
        pid = self._pid()
        if pid is not None and not kill_and_wait([pid], signal.SIGTERM, 15):
            kill_and_wait([pid])
        self.pidfile.unlink(missing_ok=True)

    def _answers(self) -> bool:
        try:
            with socket.create_connection((self.spec.network.host, USERSPACE_NFS_PORT), 1):
                return True
        except OSError:
            return False

    def _ensure_rpcbind(self) -> None:
        if _rpcbind_answers():
            return
        Path("/run/rpcbind").mkdir(exist_ok=True)
        pid = spawn([RPCBIND, "-f", "-w"], self.dir / "rpcbind.log")
        self.rpcbind_pidfile.write_text(f"{pid}\n")
        if not wait_until(_rpcbind_answers, 10, 0.1):
            raise ProviderError(f"rpcbind did not start: see {self.dir / 'rpcbind.log'}")

    def _other_ganesha_running(self) -> bool:
        """Another lab's ganesha still needs rpcbind."""
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit() and pid_runs(int(proc.name), "ganesha.nfsd"):
                return True
        return False


def _rpcbind_answers() -> bool:
    return unix_socket_answers(RPCBIND_SOCKET)
