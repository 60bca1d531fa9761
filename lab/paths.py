"""Where a lab's files live: one build directory per lab, derived from the spec."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

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


def build_dir(lab_name: str, out: str | Path | None = None) -> Path:
    """``out`` if given, else ``build/<lab>/`` beside the kit."""
    return Path(out).resolve() if out else BUILD_ROOT / lab_name


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
