"""libvirt on a host where no service manager runs it (containers, CI VMs without systemd).

Debian's libvirt packages expect systemd to start ``virtlogd`` and ``libvirtd``. Where
nothing does, the kit starts both itself, detached in their own sessions, and records
their PIDs under ``build/libvirt/`` so that it stops only what it started, by PID.
A libvirtd that already answers (started by systemd or by someone else) is used as is.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from lab.errors import ProviderError
from lab.host.proc import (
    kill_and_wait,
    read_pid,
    run,
    spawn,
    unix_socket_answers,
    wait_until,
)
from lab.paths import LIBVIRT_RUN_DIR

URI = "qemu:///system"
POOL_NAME = "default"
POOL_PATH = Path("/var/lib/libvirt/images")
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
PACKAGES = (
    "libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu qemu-system-x86 "
    "qemu-utils dnsmasq-base"
)
INSTALL_HINT = f"run ./setup.sh (or apt-get install -y --no-install-recommends {PACKAGES})"
# daemon -> (binary, socket that proves one is already running)
DAEMONS = {
    "virtlogd": (Path("/usr/sbin/virtlogd"), Path("/run/libvirt/virtlogd-sock")),
    "libvirtd": (Path("/usr/sbin/libvirtd"), Path("/run/libvirt/libvirt-sock")),
}


def virsh(*args: str, check: bool = True, timeout: float = 120) -> str:
    """``virsh -c qemu:///system ARGS``; its stdout, or a ProviderError with virsh's reason."""
    if shutil.which("virsh") is None:
        raise ProviderError(f"virsh is missing: {INSTALL_HINT}")
    proc = run(["virsh", "-c", URI, *args], check=False, timeout=timeout)
    if check and proc.returncode != 0:
        lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
        why = lines[0] if lines else f"exit code {proc.returncode}"
        raise ProviderError(f"`virsh {shlex.join(args)}` failed: {why}")
    return proc.stdout


def libvirt_answers(timeout: float = 10) -> bool:
    try:
        virsh("version", timeout=timeout)
    except ProviderError:
        return False
    return True


def ensure_libvirt(printer: Callable[[str], None] = print) -> None:
    """Make ``qemu:///system`` answer (starting the daemons if needed) with a ``default`` pool."""
    if not libvirt_answers():
        _check_installed()
        with _run_dir_lock():  # two kit processes at once must not start two libvirtds
            if not libvirt_answers():
                _start_daemons(printer)
    ensure_default_pool()


def stop_libvirt_if_started_by_kit() -> None:
    """Stop the daemons whose PIDs the kit recorded (libvirtd first), never any other."""
    with _run_dir_lock():
        for name in ("libvirtd", "virtlogd"):
            pidfile = _pidfile(name)
            pid = _recorded_pid(name)
            if pid is not None and not kill_and_wait([pid], signal.SIGTERM, STOP_TIMEOUT):
                kill_and_wait([pid], signal.SIGKILL, STOP_TIMEOUT)
            pidfile.unlink(missing_ok=True)


def started_by_kit() -> dict[str, int]:
    """The kit's running daemons: name -> PID."""
    found = {name: _recorded_pid(name) for name in DAEMONS}
    return {name: pid for name, pid in found.items() if pid is not None}


def ensure_default_pool() -> None:
    """vagrant-libvirt keeps box images and VM disks in the ``default`` pool: define/start it."""
    info = virsh("pool-info", POOL_NAME, check=False)
    if not info.strip():  # virsh prints an empty line for an unknown pool
        POOL_PATH.mkdir(parents=True, exist_ok=True)
        virsh("pool-define-as", POOL_NAME, "dir", "--target", str(POOL_PATH))
        virsh("pool-autostart", POOL_NAME)
        info = virsh("pool-info", POOL_NAME)
    if not any(line.split() == ["State:", "running"] for line in info.splitlines()):
        virsh("pool-start", POOL_NAME)
    virsh("pool-refresh", POOL_NAME)


# ------------------------------------------------------------------ internals


def _check_installed() -> None:
    for name, (binary, _) in DAEMONS.items():
        if not os.access(binary, os.X_OK):
            raise ProviderError(f"{name} is missing: {INSTALL_HINT}")
    if not os.access("/usr/bin/qemu-system-x86_64", os.X_OK):
        raise ProviderError(f"qemu-system-x86_64 is missing: {INSTALL_HINT}")


def _start_daemons(printer: Callable[[str], None]) -> None:
    LIBVIRT_RUN_DIR.mkdir(parents=True, exist_ok=True)
    started = []
    for name, (binary, sock) in DAEMONS.items():
        if name == "virtlogd" and unix_socket_answers(sock):
            continue  # someone else's virtlogd serves us fine
        pid = spawn([str(binary)], _log(name))
        _pidfile(name).write_text(f"{pid}\n")
        started.append(f"{name} (pid {pid})")
        if name == "virtlogd":
            wait_until(lambda s=sock: unix_socket_answers(s), 10, 0.2)
    deadline = time.monotonic() + READY_TIMEOUT
    # a starting libvirtd accepts connections but answers only after ~15 s of probing here
    while not libvirt_answers(timeout=READY_TIMEOUT / 2):
        pid = _recorded_pid("libvirtd")
        if pid is None or time.monotonic() > deadline:
            why = "exited" if pid is None else f"did not answer in {READY_TIMEOUT:.0f}s"
            raise ProviderError(f"libvirtd {why}: see {_log('libvirtd')}")
        time.sleep(0.5)
    printer(
        f"no service manager runs libvirt here: the kit started {' and '.join(started)}; "
        f"logs in {LIBVIRT_RUN_DIR}/"
    )


def _pidfile(name: str) -> Path:
    return LIBVIRT_RUN_DIR / f"{name}.pid"


def _log(name: str) -> Path:
    return LIBVIRT_RUN_DIR / f"{name}.log"


def _recorded_pid(name: str) -> int | None:
    """The PID in ``name``'s pidfile if that process is alive and still is ``name``."""
    return read_pid(_pidfile(name), program=name)


@contextlib.contextmanager
def _run_dir_lock() -> Iterator[None]:
    LIBVIRT_RUN_DIR.mkdir(parents=True, exist_ok=True)
    with open(LIBVIRT_RUN_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
