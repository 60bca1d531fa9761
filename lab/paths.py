"""Where a lab's files live: one build directory per lab, derived from the spec."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from lab.errors import UsageError

if TYPE_CHECKING:
    from lab.spec import LabSpec

TEMPLATE_MARKERS = ("tasks.py", "stacks", "cloud-config", "Vagrantfile.j2")


def _is_kit_root(path: Path) -> bool:
    return all((path / marker).exists() for marker in TEMPLATE_MARKERS)


def kit_root() -> Path:
    """The checkout holding tasks.py and the templates: beside this package in a clone
    or an editable install; else (``pip install .``) the checkout ``inv`` runs in."""
    beside = Path(__file__).resolve().parent.parent
    if _is_kit_root(beside):
        return beside
    for candidate in (Path.cwd(), *Path.cwd().parents):
        if _is_kit_root(candidate):
            return candidate
    return beside


REPO_ROOT = kit_root()
DEFAULT_SPEC = REPO_ROOT / "lab.yaml"
BUILD_ROOT = REPO_ROOT / "build"
CACHE_ENV = "HA_REGISTRY_LAB_CACHE"
# pidfiles and logs of the libvirtd/virtlogd the kit starts where no service manager does
LIBVIRT_RUN_DIR = BUILD_ROOT / "libvirt"


KERNEL_FILESYSTEMS = (Path("/proc"), Path("/sys"), Path("/dev"))


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def out_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a build directory, known before anything is written."""
    if any(path == root or root in path.parents for root in KERNEL_FILESYSTEMS):
        return "is on a kernel file system (/proc, /sys, /dev), not a place for a lab"
    if path.exists() and not path.is_dir():
        return "exists and is not a directory"
    existing = _nearest_existing(path)
    if not existing.is_dir():
        return f"{existing} is a file, not a directory"
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        return f"{existing} is on a read-only file system"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def build_dir(lab_name: str, out: str | Path | None = None) -> Path:
    """``out`` if given (refused in one line when it cannot hold a lab), else
    ``build/<lab>/`` beside the kit."""
    if not out:
        return BUILD_ROOT / lab_name
    path = Path(out).resolve()
    problem = out_problem(path)
    if problem:
        raise UsageError(f"--out {str(out)[:80]}: {problem}")
    return path


def cache_dir() -> Path:
    """Where built images, their mirror and the box live: $HA_REGISTRY_LAB_CACHE or build/cache.

    Shared by every lab and kept by ``lab.destroy``."""
    return Path(os.environ.get(CACHE_ENV) or BUILD_ROOT / "cache")


def nfs_export_path(spec: LabSpec, build: Path) -> Path:
    """The host directory every node mounts at ``nfs.mount`` (relative to the build dir)."""
    export = Path(spec.nfs.export)
    return export if export.is_absolute() else Path(build) / export


def logs_dir(build: Path) -> Path:
    """Host-side logs of one lab (mirror, VM consoles), whatever the provider."""
    return Path(build) / "logs"


def extra_keys_file(build: Path) -> Path:
    """Public keys a lab's nodes accept as root besides the lab's own (a trainee's login,
    written by ``inv class.up`` before the nodes are made)."""
    return Path(build) / "authorized_keys.extra"


def access_sheet_file(build: Path) -> Path:
    """A class trainee's access sheet beside their lab, for the workbook."""
    return Path(build) / "ACCESS.md"
