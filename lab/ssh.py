"""`inv lab.ssh NODE [-- CMD]`: the system ssh client onto a node, with the lab's key
and the lab's pinned known_hosts.

The kit's own SSH (lab.remote, paramiko) records a node's host key on first contact;
OpenSSH is then run with ``StrictHostKeyChecking=yes`` against that same file, so a
trainee's shell and the kit always agree on who the node is. The command is built as
an argv list and executed directly: no local shell ever sees it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from lab.errors import ProviderError, UnknownName
from lab.nodes import NodeAccess
from lab.remote import Remote

SSH_CLIENT = "ssh"


def ssh_argv(
    node: NodeAccess,
    known_hosts: Path,
    command: Sequence[str] = (),
    *,
    tty: bool = False,
    client: str = SSH_CLIENT,
) -> list[str]:
    """The ssh argv for ``node``: the lab's key only, the lab's host keys only."""
    argv = [
        client,
        "-i", str(node.key_file),
        "-p", str(node.port),
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "IdentitiesOnly=yes",
        "-o", "PasswordAuthentication=no",
        "-o", "LogLevel=ERROR",
    ]  # fmt: skip
    if tty:
        argv.append("-t")
    argv.append(f"{node.user}@{node.address}")
    if command:
        # "--" ends ssh's options: a command such as `-V` stays the node's, not ssh's.
        argv += ["--", *command]
    return argv


def pick_node(nodes: Sequence[NodeAccess], name: str) -> NodeAccess:
    for node in nodes:
        if node.name == name:
            return node
    names = ", ".join(n.name for n in nodes)
    raise UnknownName(f"no node {name!r} in this lab; nodes: {names}")


def record_host_key(node: NodeAccess, known_hosts: Path) -> None:
    """Meet the node once through the kit's SSH, which writes its key to known_hosts."""
    with Remote([node], known_hosts, printer=None, connect_attempts=2) as remote:
        remote.client(node.name)


def exec_ssh(node: NodeAccess, known_hosts: Path, command: Sequence[str]) -> None:
    """Replace this process by ssh (its exit code becomes the task's)."""
    client = shutil.which(SSH_CLIENT)
    if client is None:
        raise ProviderError("no ssh client: apt-get install openssh-client")
    record_host_key(node, known_hosts)
    tty = not command and os.isatty(0)
    argv = ssh_argv(node, known_hosts, command, tty=tty, client=client)
    os.execv(client, argv)
