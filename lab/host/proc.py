"""Processes on this host: the one subprocess wrapper, long-running daemons, PIDs.

A failing command becomes one :class:`ProviderError` line (its last stderr line, and
where the full output went); a missing tool names the Debian package to install.
Processes are only ever signalled by PID, and a PID is trusted only while
``/proc/<pid>`` still shows the program we started (:func:`pid_runs`).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from lab.errors import ProviderError

# tool -> Debian package that provides it: a missing one is named with its fix.
TOOL_PACKAGES = {
    "dockerd": "docker.io",
    "docker": "docker.io",
    "containerd": "containerd",
    "sshd": "openssh-server",
    "ssh": "openssh-client",
    "docker-registry": "docker-registry",
    "ip": "iproute2",
    "iptables": "iptables",
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "mount": "mount",
    "mkfs.btrfs": "btrfs-progs",
    "btrfs": "btrfs-progs",
    "skopeo": "skopeo",
    "debootstrap": "debootstrap",
    "vagrant": "vagrant",
}
TOOL_PATHS = {"sshd": "/usr/sbin/sshd"}  # sshd insists on being started by absolute path


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for processes we start: AWS_CA_BUNDLE breaks the registry's S3 driver."""
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env.update(extra)
    return env


def install_hint(tool: str) -> str:
    package = TOOL_PACKAGES.get(tool)
    return f"apt-get install {package}" if package else "run ./setup.sh"


def run(
    argv: list[str],
    *,
    check: bool = True,
    input: str | None = None,
    timeout: float = 120,
    log: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a host command; a failure becomes a ProviderError with its last output line.

    With ``log`` the command and its whole output are appended there, and the error
    says so (long builds keep their output; the user sees one line).
    """
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
            env=env or clean_env(),
        )
    except FileNotFoundError:
        raise ProviderError(f"{argv[0]} is missing: {install_hint(Path(argv[0]).name)}") from None
    except subprocess.TimeoutExpired:
        raise ProviderError(f"`{shlex.join(argv)[:120]}` did not end in {timeout:.0f}s") from None
    if log:
        with open(log, "a") as handle:
            handle.write(f"$ {shlex.join(argv)}\n{proc.stdout}{proc.stderr}")
    if check and proc.returncode != 0:
        raise ProviderError(f"`{shlex.join(argv)[:120]}` failed: {last_line(proc)}" + (
            f" (full output in {log})" if log else ""))  # fmt: skip
    return proc


def last_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (proc.stderr or proc.stdout or "").strip().splitlines() if line]
    return lines[-1] if lines else f"exit code {proc.returncode}"


def tool_path(tool: str) -> str:
    """Absolute path of a required tool, or a ProviderError naming the package to install."""
    fixed = TOOL_PATHS.get(tool)
    found = fixed if fixed and os.access(fixed, os.X_OK) else shutil.which(tool)
    if not found:
        raise ProviderError(f"{tool} is missing: {install_hint(tool)}")
    return found


def require_tools(tools: Iterable[str]) -> None:
    for tool in tools:
        tool_path(tool)


def docker_client() -> str:
    """Debian's client (same version as the daemons) when present, else any docker on PATH."""
    if os.access("/usr/bin/docker", os.X_OK):
        return "/usr/bin/docker"
    return tool_path("docker")


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


# ----------------------------------------------------------------------- PIDs


def pid_alive(pid: int) -> bool:
    """True for a running process; a zombie (dead, not yet reaped) counts as gone."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own child
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def pid_runs(pid: int, program: str) -> bool:
    """``pid`` is alive and still runs ``program`` (a reused PID is someone else's)."""
    if not pid_alive(pid):
        return False
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return False
    return Path(argv0).name == program


def read_pid(path: Path, program: str | None = None) -> int | None:
    """The live PID in a pidfile (and still ``program``, when given), else None."""
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if program is not None:
        return pid if pid_runs(pid, program) else None
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


def stop_pid(pid: int | None, grace: float) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds."""
    if pid and not kill_and_wait([pid], signal.SIGTERM, grace):
        kill_and_wait([pid])


# ------------------------------------------------------------------- sockets


def docker_ping(sock: Path, timeout: float = 2) -> bool:
    """True when a dockerd answers on its unix socket (faster than `docker version`)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(sock))
            conn.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return conn.recv(64).startswith(b"HTTP/1.0 200") or False
    except OSError:
        return False


def tcp_open(address: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
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
