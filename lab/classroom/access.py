"""A trainee's one login: a key pair, a host account that can only jump to the trainee's
own nodes, the class's own sshd as the single entry, and the access sheet.

The account has no shell (``nologin``) and no password; its key may only open
``direct-tcpip`` channels (what ``ssh -J`` uses) to its own nodes' port 22, said twice:
``permitopen`` on the key and ``PermitOpen`` in a ``Match User`` block. The nodes accept
the same key as root (the lab puts it next to the lab's own key), so one file gets a
trainee to their lab and nowhere else. The private key is written 0600 for the
instructor to hand over; it is never printed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

from lab.errors import ProviderError, UsageError
from lab.host.proc import read_pid, run, spawn, stop_pid, tcp_open, tool_path, wait_until
from lab.paths import extra_keys_file
from lab.secrets import write_ed25519_keypair
from lab.spec import LabSpec

ACCOUNT_MARK = "ha-registry-lab class"  # the GECOS field of every account we make
PRIVSEP_DIR = Path("/run/sshd")  # Debian's sshd insists on it
DEFAULT_SSH_PORT = 2222


@dataclass(frozen=True)
class Trainee:
    """One trainee's access: the lab, the account (= the lab's name) and key files."""

    name: str
    spec: LabSpec
    directory: Path  # <class>/access/<trainee>/

    @property
    def account(self) -> str:
        return self.spec.name  # a DNS label of at most 32: a valid login name too

    @property
    def key_file(self) -> Path:
        return self.directory / f"{self.spec.name}_ed25519"

    @property
    def public_key(self) -> str:
        return self.key_file.with_name(self.key_file.name + ".pub").read_text().strip()

    @property
    def sheet(self) -> Path:
        return self.directory / "ACCESS.md"

    def targets(self) -> list[str]:
        return [f"{node.ip}:22" for node in self.spec.nodes]


def ensure_key(trainee: Trainee, build: Path) -> None:
    """The trainee's key pair (made once, 0600) and the lab's note to let it in as root."""
    trainee.directory.mkdir(parents=True, exist_ok=True)
    os.chmod(trainee.directory, 0o700)
    if not trainee.key_file.exists():
        write_ed25519_keypair(trainee.key_file, trainee.key_file.with_name(
            trainee.key_file.name + ".pub"), comment=f"{trainee.account}@class")  # fmt: skip
    extra = extra_keys_file(build)
    extra.parent.mkdir(parents=True, exist_ok=True)
    extra.write_text(trainee.public_key + "\n")
    os.chmod(extra, 0o600)


# ------------------------------------------------------------------ accounts


def _passwd_entry(account: str) -> list[str] | None:
    for line in Path("/etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == account:
            return fields
    return None


def ensure_account(trainee: Trainee, class_name: str) -> None:
    """A system account without home, shell or password, marked as the class's."""
    entry = _passwd_entry(trainee.account)
    mark = f"{ACCOUNT_MARK} {class_name}"
    if entry is not None:
        if entry[4] != mark:
            raise UsageError(f"host account {trainee.account} exists and is not this class's: "
                             "choose another template or trainee name")  # fmt: skip
        return
    # '*' (not useradd's locking '!') lets sshd accept the key without PAM; no password
    # can ever match it.
    run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", "--comment", mark, "--password", "*",
         trainee.account])  # fmt: skip


def remove_account(account: str, class_name: str) -> None:
    entry = _passwd_entry(account)
    if entry is not None and entry[4] == f"{ACCOUNT_MARK} {class_name}":
        run(["userdel", account])


def class_accounts(class_name: str) -> list[str]:
    mark = f"{ACCOUNT_MARK} {class_name}"
    lines = Path("/etc/passwd").read_text().splitlines()
    return [f[0] for f in (line.split(":") for line in lines) if len(f) > 4 and f[4] == mark]


# -------------------------------------------------------------------- sshd


class ClassSshd:
    """The class's own sshd: the single door to every trainee's nodes."""

    def __init__(self, directory: Path, port: int):
        self.directory = directory  # <class>/sshd/
        self.port = port
        self.config = directory / "sshd_config"
        self.pidfile = directory / "sshd.pid"
        self.keys_dir = directory / "keys"
        self.host_key = directory / "ssh_host_ed25519_key"
        self.log = directory / "sshd.log"

    def write(self, trainees: list[Trainee]) -> None:
        """Host key (once), one keys file per account, and the config for these trainees."""
        self.keys_dir.mkdir(parents=True, exist_ok=True)
        if not self.host_key.exists():
            write_ed25519_keypair(self.host_key, self.host_key.with_name(
                self.host_key.name + ".pub"), comment="ha-registry-lab-class")  # fmt: skip
        wanted = {t.account for t in trainees}
        for stale in self.keys_dir.iterdir():
            if stale.name not in wanted:
                stale.unlink()
        for trainee in trainees:
            opens = ",".join(f'permitopen="{target}"' for target in trainee.targets())
            line = f"restrict,port-forwarding,{opens} {trainee.public_key}\n"
            (self.keys_dir / trainee.account).write_text(line)
        self.config.write_text(self._config(trainees))

    def _config(self, trainees: list[Trainee]) -> str:
        lines = [
            f"Port {self.port}",
            f"HostKey {self.host_key}",
            f"PidFile {self.pidfile}",
            f"AuthorizedKeysFile {self.keys_dir}/%u",
            # The kit writes every file it reads, as root, in a build directory whose
            # parents are not ours to chmod.
            "StrictModes no",
            f"AllowUsers {' '.join(sorted(t.account for t in trainees)) or 'nobody-here'}",
            "PermitRootLogin no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "PermitTTY no",
            "X11Forwarding no",
            "AllowAgentForwarding no",
            "AllowStreamLocalForwarding no",
            "PermitTunnel no",
            "GatewayPorts no",
            "AllowTcpForwarding local",
            "PermitOpen none",  # widened per account below, to its own nodes only
            "ForceCommand /usr/sbin/nologin",
            "PrintMotd no",
        ]
        for trainee in sorted(trainees, key=lambda t: t.account):
            lines += [f"Match User {trainee.account}",
                      f"    PermitOpen {' '.join(trainee.targets())}"]  # fmt: skip
        return "\n".join(lines) + "\n"

    def pid(self) -> int | None:
        """Our sshd's PID: sshd rewrites its title, so it is known by its config path."""
        pid = read_pid(self.pidfile)
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes() if pid else b""
        except OSError:
            return None
        return pid if str(self.config).encode() in title else None

    def ensure_running(self) -> None:
        """Check the config with ``sshd -t``; start, or make a running sshd reread it."""
        sshd = tool_path("sshd")
        if not PRIVSEP_DIR.exists():
            PRIVSEP_DIR.mkdir(mode=0o755)
            (self.directory / "made-run-sshd").touch()
        check = run([sshd, "-t", "-f", str(self.config)], check=False)
        if check.returncode != 0:
            raise ProviderError(f"the class sshd's config is refused: {check.stderr.strip()[:200]}")
        pid = self.pid()
        if pid:
            os.kill(pid, signal.SIGHUP)  # sshd re-executes itself with the new config
            return
        if tcp_open("127.0.0.1", self.port):
            raise UsageError(f"port {self.port} is taken by another program: choose --ssh-port")
        spawn([sshd, "-D", "-f", str(self.config), "-E", str(self.log)], self.log)
        if not wait_until(lambda: tcp_open("127.0.0.1", self.port), 15, 0.1):
            raise ProviderError(
                f"the class sshd did not listen on port {self.port}, see {self.log}"
            )

    def stop(self) -> None:
        stop_pid(self.pid(), grace=5)
        self.pidfile.unlink(missing_ok=True)
        marker = self.directory / "made-run-sshd"
        if marker.exists():
            with contextlib.suppress(OSError):  # someone else's sshd uses it now
                PRIVSEP_DIR.rmdir()
            marker.unlink()


def server_address() -> str:
    """This server's address on its default route's interface (what trainees dial)."""
    shown = run(["ip", "-o", "-4", "route", "show", "default"], check=False).stdout.split()
    if "dev" in shown:
        device = shown[shown.index("dev") + 1]
        addr = run(["ip", "-o", "-4", "addr", "show", "dev", device], check=False).stdout.split()
        if "inet" in addr:
            return str(ipaddress.IPv4Interface(addr[addr.index("inet") + 1]).ip)
    return socket.getfqdn()


def sheet_text(trainee: Trainee, server: str, port: int) -> str:
    """The access sheet: where, who, with what, and the first commands."""
    key = trainee.key_file.name
    front = f"http://{trainee.spec.front_address}:{trainee.spec.loadbalancer.port}"
    jump = f"{trainee.account}@{server}:{port}"
    first = trainee.spec.nodes[0]
    hosts = "\n".join(
        f"Host {node.name}\n    HostName {node.ip}\n    User root\n"
        f"    IdentityFile ~/.ssh/{key}\n    ProxyJump {trainee.account}-door"
        for node in trainee.spec.nodes
    )
    return f"""# Your lab: {trainee.spec.name}

| | |
| --- | --- |
| trainee | {trainee.name} |
| server | {server}, SSH port {port} |
| login | {trainee.account} (key only: the file `{key}` your instructor gave you) |
| your nodes | {", ".join(f"{n.name} {n.ip}" for n in trainee.spec.nodes)} |
| front address | {front} (from a node) |

The login only passes you through to your own nodes (there is no shell on the
server itself); on the nodes you are root.

## Start

```sh
cp {key} ~/.ssh/{key} && chmod 600 ~/.ssh/{key}
ssh -i ~/.ssh/{key} -J {jump} root@{first.ip}
```

## Or once in ~/.ssh/config

```
Host {trainee.account}-door
    HostName {server}
    Port {port}
    User {trainee.account}
    IdentityFile ~/.ssh/{key}
{hosts}
```

then `ssh {first.name}`. Follow your workbook from the first phase; your instructor
sees your progress and grades with `inv phase NAME --check`.
"""


def write_sheet(trainee: Trainee, server: str, port: int) -> Path:
    trainee.sheet.write_text(sheet_text(trainee, server, port))
    return trainee.sheet
