"""The Vagrant provider: three VMs driven through python-vagrant.

Checkpoints cover all VMs together: every VM gets a Vagrant snapshot of the
same name. Vagrant snapshots do not include synced folders, and the lab's
shared directory (the host's NFS export mounted at ``/mnt/docker_reg`` on every
node) is such a folder, so the provider copies that directory itself into
``build/<lab>/snapshots/<name>/shared`` when it saves a checkpoint and puts it
back when it restores one. A checkpoint exists only when every VM has the
snapshot and the copy of the shared directory exists.

Errors reach the user as one :class:`ProviderError` line: a missing tool names
the fix, a failing vagrant command gives the command and the last paragraph
vagrant printed on stderr.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TypeVar

import vagrant

from lab.errors import ProviderError, UnknownName
from lab.host.files import copy_contents, empty_directory
from lab.nodes import Capabilities, NodeAccess
from lab.paths import nfs_export_path
from lab.spec import LabSpec

T = TypeVar("T")

# The host tool each Vagrant provider needs, and the line that tells a user how to get it.
VM_TOOLS: dict[str, tuple[str, str]] = {
    "virtualbox": (
        "VBoxManage",
        "VirtualBox is not installed (VBoxManage not found): "
        "install VirtualBox 7, or use --provider local",
    ),
}
VAGRANT_MISSING = (
    "Vagrant is not installed (vagrant not found on PATH): "
    "apt-get install vagrant, or use --provider local"
)
SNAPSHOTS_DIR = "snapshots"
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
MAX_ERROR_CHARS = 300


def last_stderr_paragraph(stderr: str) -> str:
    """The last paragraph vagrant wrote on stderr, as one line (vagrant wraps its errors)."""
    text = ANSI_ESCAPE.sub("", stderr).strip()
    if not text:
        return "no error output"
    paragraph = re.split(r"\n\s*\n", text)[-1]
    line = " ".join(part.strip() for part in paragraph.splitlines() if part.strip())
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 3] + "..."


def split_ssh_config(text: str) -> dict[str, str]:
    """``vagrant ssh-config`` for several machines -> one ``Host`` block per machine."""
    blocks: dict[str, list[str]] = {}
    lines: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("Host "):
            lines = blocks.setdefault(line.split(None, 1)[1].strip(), [])
        if lines is not None:
            lines.append(line)
    return {host: "\n".join(lines) + "\n" for host, lines in blocks.items()}


def node_access(name: str, ssh_config_block: str) -> NodeAccess:
    """One machine's ``Host`` block -> how the engine reaches it over SSH."""
    # python-vagrant's own parser (quoted values, comments); only the conversion is ours.
    conf = vagrant.Vagrant().conf(ssh_config=ssh_config_block, vm_name=name)
    try:
        return NodeAccess(
            name=name,
            address=conf["HostName"],
            port=int(conf["Port"]),
            user=conf["User"],
            key_file=Path(conf["IdentityFile"]),
        )
    except (KeyError, ValueError) as exc:
        raise ProviderError(f"vagrant ssh-config for {name} lacks a usable {exc}") from None


def snapshot_names(machine_readable: str) -> dict[str, set[str]]:
    """``vagrant snapshot list --machine-readable`` -> machine -> its snapshot names."""
    names: dict[str, set[str]] = {}
    for line in machine_readable.splitlines():
        fields = line.split(",", 4)
        if len(fields) == 5 and fields[1] and fields[2:4] == ["ui", "detail"]:
            names.setdefault(fields[1], set()).add(fields[4].strip())
    return names


class _LabVagrant(vagrant.Vagrant):
    """python-vagrant plus the command forms it has no method for.

    Its ``snapshot_*`` methods take no machine name and no options; the kit needs
    ``--force`` (a checkpoint is retaken after a replay), ``--no-provision`` and
    ``--no-start`` (see :meth:`VagrantProvider.snapshot_restore`).
    """

    def command(self, *args: str) -> None:
        self._call_vagrant_command(list(args))

    def output(self, *args: str) -> str:
        return self._run_vagrant_command(list(args))


class _StderrCapture:
    """Collects a vagrant command's stderr so a failure can be told in one line."""

    def __init__(self, echo: bool):
        self.echo = echo  # long operations also show their warnings to the user
        self.text = ""

    @contextmanager
    def cm(self) -> Iterator[IO[bytes]]:
        with tempfile.TemporaryFile() as handle:
            try:
                yield handle
            finally:
                handle.seek(0)
                self.text = handle.read().decode(errors="replace")
                if self.echo and self.text:
                    sys.stderr.write(self.text)
                    sys.stderr.flush()


class VagrantProvider:
    """The lab's nodes as Vagrant VMs (``vm_provider``: virtualbox by default)."""

    name = "vagrant"
    capabilities = Capabilities(ipvs=True, systemd=True, fleet=False)

    def __init__(
        self,
        spec: LabSpec,
        build: Path,
        *,
        say: Callable[[str], None] = print,
        vm_provider: str = "virtualbox",
    ):
        self.spec = spec
        self.build = Path(build)
        self.say = say
        self.vm_provider = vm_provider
        self.machines = [node.name for node in spec.nodes]
        self.shared_dir = nfs_export_path(spec, self.build)

    # --- lifecycle -----------------------------------------------------------

    def up(self) -> None:
        """Create and boot all VMs; vagrant's output streams to the terminal."""
        self._vagrant("up", lambda v: v.up(provider=self.vm_provider), echo=True)

    def halt(self) -> None:
        self._vagrant("halt", lambda v: v.halt(), echo=True)

    def power_off(self, node: str) -> None:
        """`vagrant halt --force`: VirtualBox's poweroff, no shutdown in the guest."""
        machine = self._machine(node)
        self._vagrant(f"halt --force {machine}", lambda v: v.halt(vm_name=machine, force=True))

    def power_on(self, node: str) -> None:
        machine = self._machine(node)
        self._vagrant(
            f"up {machine}",
            lambda v: v.up(vm_name=machine, no_provision=True, provider=self.vm_provider),
            echo=True,
        )

    def _machine(self, node: str) -> str:
        if node not in self.machines:
            raise UnknownName(f"{node!r} is not a node of lab {self.spec.name}")
        return node

    def destroy(self) -> None:
        """Destroy all VMs (their snapshots go with them) and the shared-directory copies."""
        self._vagrant("destroy", lambda v: v.destroy(), echo=True)
        shutil.rmtree(self.build / SNAPSHOTS_DIR, ignore_errors=True)

    def status(self) -> dict[str, str]:
        """Machine -> vagrant's state (``not_created``, ``running``, ``poweroff``...)."""
        statuses = self._vagrant("status", lambda v: v.status())
        return {status.name: status.state for status in statuses}

    def nodes(self) -> list[NodeAccess]:
        # One `vagrant ssh-config` for all machines: each vagrant start costs about a second.
        text = self._vagrant("ssh-config", lambda v: v.ssh_config())
        blocks = split_ssh_config(text)
        missing = [name for name in self.machines if name not in blocks]
        if missing:
            raise ProviderError(f"vagrant ssh-config printed nothing for {', '.join(missing)}")
        return [node_access(name, blocks[name]) for name in self.machines]

    # --- checkpoints ---------------------------------------------------------

    def snapshot_save(self, name: str) -> None:
        """Snapshot every VM as ``name`` (replacing an older one) and copy the shared dir."""
        for machine in self.machines:
            self._vagrant(
                f"snapshot save {machine} {name}",
                lambda v, m=machine: v.command("snapshot", "save", "--force", m, name),
                echo=True,
            )
        self._save_shared(name)

    def image_substitutes(self) -> tuple[str, str]:
        """VirtualBox nodes pull from the internet as in the tutorial: the spec's own images."""
        return self.spec.minio.image, self.spec.loadbalancer.kind

    def offline_images(self) -> dict[str, str]:
        """VirtualBox nodes pull the real images lab.yaml names: nothing is swapped."""
        return {}

    def snapshot_restore(self, name: str) -> None:
        """Roll every VM and the shared directory back to checkpoint ``name``.

        The VMs are restored without starting them, the shared directory is put
        back while no node can write to it, and only then are the VMs resumed.
        """
        existing = self.snapshot_list()
        if name not in existing:
            known = ", ".join(existing) or "none"
            raise ProviderError(f"no checkpoint named {name!r} (checkpoints: {known})")
        for machine in self.machines:
            self._vagrant(
                f"snapshot restore {machine} {name}",
                lambda v, m=machine: v.command(
                    "snapshot", "restore", "--no-provision", "--no-start", m, name
                ),
                echo=True,
            )
        self._restore_shared(name)
        self._vagrant("up", lambda v: v.up(provider=self.vm_provider, provision=False), echo=True)

    def snapshot_list(self) -> list[str]:
        """Checkpoints every VM has and whose shared-directory copy exists, sorted."""
        listing = self._vagrant(
            "snapshot list", lambda v: v.output("snapshot", "list", "--machine-readable")
        )
        per_machine = snapshot_names(listing)
        common = set.intersection(*(per_machine.get(m, set()) for m in self.machines))
        return sorted(name for name in common if self._shared_copy(name).is_dir())

    def snapshot_delete(self, name: str) -> None:
        """Delete checkpoint ``name`` wherever a part of it exists (VMs, shared copy)."""
        listing = self._vagrant(
            "snapshot list", lambda v: v.output("snapshot", "list", "--machine-readable")
        )
        per_machine = snapshot_names(listing)
        holders = [m for m in self.machines if name in per_machine.get(m, set())]
        copy_dir = self.build / SNAPSHOTS_DIR / name
        if not holders and not copy_dir.exists():
            raise ProviderError(f"no checkpoint named {name!r}")
        for machine in holders:
            self._vagrant(
                f"snapshot delete {machine} {name}",
                lambda v, m=machine: v.command("snapshot", "delete", m, name),
                echo=True,
            )
        shutil.rmtree(copy_dir, ignore_errors=True)

    # --- the shared directory --------------------------------------------------

    def _shared_copy(self, name: str) -> Path:
        return self.build / SNAPSHOTS_DIR / name / "shared"

    def _save_shared(self, name: str) -> None:
        target = self._shared_copy(name)
        partial = target.with_name("shared.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.parent.mkdir(parents=True, exist_ok=True)
        self.shared_dir.mkdir(parents=True, exist_ok=True)
        copy_contents(self.shared_dir, partial)
        # Swap in only a complete copy: a checkpoint never holds half a directory.
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)

    def _restore_shared(self, name: str) -> None:
        # Empty and refill in place: the directory itself is the NFS export and must
        # stay the same directory (renaming it would leave stale file handles).
        self.shared_dir.mkdir(parents=True, exist_ok=True)
        empty_directory(self.shared_dir)
        copy_contents(self._shared_copy(name), self.shared_dir)

    # --- running vagrant ---------------------------------------------------------

    def _require_tools(self) -> None:
        if shutil.which("vagrant") is None:
            raise ProviderError(VAGRANT_MISSING)
        tool, fix = VM_TOOLS.get(self.vm_provider, ("", ""))
        if tool and shutil.which(tool) is None:
            raise ProviderError(fix)

    def _vagrant(self, what: str, call: Callable[[_LabVagrant], T], echo: bool = False) -> T:
        """Run one vagrant command in the build dir; a failure becomes one ProviderError line."""
        self._require_tools()
        stderr = _StderrCapture(echo)
        client = _LabVagrant(
            root=str(self.build),
            quiet_stdout=False,
            err_cm=stderr.cm,
            # Commands other than `up` pick the provider from here, not from --provider.
            env={**os.environ, "VAGRANT_DEFAULT_PROVIDER": self.vm_provider},
        )
        try:
            return call(client)
        except subprocess.CalledProcessError as exc:
            reason = last_stderr_paragraph(stderr.text)
            raise ProviderError(
                f"vagrant {what} failed (exit {exc.returncode}): {reason}"
            ) from None
        except OSError as exc:
            raise ProviderError(f"vagrant {what} could not run: {exc}") from None
