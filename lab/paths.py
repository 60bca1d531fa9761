"""Where a lab's files live: one build directory per lab, derived from the spec."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPEC = REPO_ROOT / "lab.yaml"
BUILD_ROOT = REPO_ROOT / "build"
# pidfiles and logs of the libvirtd/virtlogd the kit starts where no service manager does
LIBVIRT_RUN_DIR = BUILD_ROOT / "libvirt"


def build_dir(lab_name: str, out: str | Path | None = None) -> Path:
    """``out`` if given, else ``build/<lab>/`` beside the kit."""
    return Path(out).resolve() if out else BUILD_ROOT / lab_name
