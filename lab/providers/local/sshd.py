"""A node's OpenSSH server: root login with the lab's key only, the node's own host key,
and ``DOCKER_HOST`` pointing at the node's dockerd in every session."""

from __future__ import annotations

from pathlib import Path

from lab.errors import ProviderError
from lab.host.proc import read_pid, spawn, tcp_open, tool_path, wait_until
from lab.providers.local.layout import NodeLayout
from lab.providers.local.namespaces import enter
from lab.secrets import write_ed25519_keypair

LOGIN_USER = "root"
SSHD_READY_TIMEOUT = 15.0


def write_node_files(node: NodeLayout, public_key: str) -> None:
    """authorized_keys, the private dirs, an empty daemon.json, host key and sshd_config."""
    node.authorized_keys.write_text(public_key.strip() + "\n")
    node.authorized_keys.chmod(0o600)
    for sub in ("root", "etc-docker", "registry-config"):
        (node.private_dir / sub).mkdir(parents=True, exist_ok=True)
    (node.private_dir / "root").chmod(0o700)
    node.daemon_json.write_text("{}\n")  # keep any host /etc/docker/daemon.json out
    node.sshd_dir.mkdir(parents=True, exist_ok=True)
    host_key = node.sshd_dir / "ssh_host_ed25519_key"
    if not host_key.exists():
        write_ed25519_keypair(host_key, host_key.with_name(host_key.name + ".pub"),
                              comment=f"root@{node.name}")  # fmt: skip
    (node.sshd_dir / "sshd_config").write_text(sshd_config(node, host_key))


def sshd_config(node: NodeLayout, host_key: Path) -> str:
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


def start(node: NodeLayout) -> None:
    if read_pid(node.sshd_pidfile):
        return
    config = node.sshd_dir / "sshd_config"
    log = node.log_dir / f"{node.name}-sshd.log"
    argv = [*enter(node), tool_path("sshd"), "-D", "-f", str(config), "-E", str(log)]
    pid = spawn(argv, log)
    node.sshd_pidfile.write_text(str(pid))
    if not wait_until(lambda: tcp_open(node.ip, 22), SSHD_READY_TIMEOUT):
        raise ProviderError(f"{node.name}: sshd did not listen on {node.ip}:22, see {log}")
