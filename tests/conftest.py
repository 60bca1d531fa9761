"""Shared fixtures: the default lab as data, and a way to write variants of it."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def default_lab() -> dict[str, Any]:
    return yaml.safe_load((REPO / "lab.yaml").read_text())


@pytest.fixture
def lab_data(default_lab: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of lab.yaml's data that a test may change."""
    return copy.deepcopy(default_lab)


@pytest.fixture
def write_lab(tmp_path: Path) -> Callable[[Any], Path]:
    def write(data: Any, name: str = "lab.yaml") -> Path:
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
        return path

    return write


def run_inv(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run an Invoke task as a user would, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


# ---------------------------------------------------------------- local provider
# Fixtures for tests that need the local provider's real nodes (root, Linux).
# Images are built once per cache dir ($HA_REGISTRY_LAB_CACHE or build/cache).


@pytest.fixture(scope="session")
def local_lab_spec(tmp_path_factory: pytest.TempPathFactory):
    """(spec, build dir) of the test lab: its own name and subnet, never a user's lab."""
    from local_lab import local_lab_data, write_lab

    from lab.spec import load_spec

    directory = tmp_path_factory.mktemp("local-lab")
    return load_spec(write_lab(directory, local_lab_data())), directory / "build"


@pytest.fixture(scope="session")
def local_lab_images(local_lab_spec):
    """The offline images in the mirror (built on first use, cached afterwards)."""
    from lab.images import build_images

    spec, build = local_lab_spec
    return build_images(spec, build)
