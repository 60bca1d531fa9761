"""The lab's host side, below every provider: processes, mounts, cgroups, the lab
bridge and the image mirror. Imports only the leaves (spec, paths, errors).

:class:`LabHost` is what a provider that puts nodes on this host needs before its
nodes exist (the bridge with its FORWARD rule, the mirror) and what it removes last.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

from lab.errors import ProviderError
from lab.host.bridge import LabBridge
from lab.host.files import empty_directory
from lab.host.mirror import Mirror
from lab.host.mounts import RUN_ROOT, remove_created_dirs_if_last, unmount_all_under
from lab.host.proc import require_tools
from lab.paths import logs_dir, nfs_export_path
from lab.spec import LabSpec

HOST_TOOLS = ("ip", "iptables", "docker-registry")


def require_root(tools: Iterable[str] = ()) -> None:
    """Linux, root and ``tools``, or one line saying which is missing."""
    if not sys.platform.startswith("linux"):
        raise ProviderError("the lab's host side needs Linux: use the vagrant provider")
    if os.geteuid() != 0:
        raise ProviderError("the lab's host side needs root: run it as root (sudo -E inv ...)")
    require_tools(tools)


class LabHost:
    """One lab's bridge, FORWARD rule and mirror, found again from the spec alone."""

    def __init__(self, spec: LabSpec, build: Path):
        self.spec = spec
        self.build = Path(build)
        self.run_dir = RUN_ROOT / spec.name
        self.log_dir = logs_dir(self.build)
        self.bridge = LabBridge(spec)
        self.mirror = Mirror(spec, self.run_dir, self.log_dir)
        self.shared_dir = nfs_export_path(spec, self.build)

    def ensure(self) -> Mirror:
        """Bridge, forward rule and a running mirror; returns the mirror."""
        require_root(HOST_TOOLS)
        self.bridge.ensure()
        self.mirror.ensure_running()
        return self.mirror

    def teardown(self) -> None:
        """Mirror, bridge, the lab's run dir and the shared directory's contents; then the
        host mount points the kit created, once no other lab needs them."""
        require_root(("ip", "iptables"))
        self.mirror.stop()
        self.bridge.remove()
        unmount_all_under(self.run_dir)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        empty_directory(self.shared_dir)
        remove_created_dirs_if_last()
