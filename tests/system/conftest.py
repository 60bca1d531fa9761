"""Fixtures for the system tests: the local provider's real nodes (root, Linux).

Images are built once per cache dir ($HA_REGISTRY_LAB_CACHE or build/cache).
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def as_root() -> None:
    """Never skipped: without root the system tests fail here with the reason."""
    if os.geteuid() != 0:
        pytest.fail("tests/system needs root (namespaces, mounts, VMs): run it as root")


@pytest.fixture(scope="session")
def local_lab_spec(tmp_path_factory: pytest.TempPathFactory):
    """(spec, build dir) of the test lab: its own name and subnet, never a user's lab."""
    from lab.spec import load_spec
    from tests.system.local_lab import local_lab_data, write_lab

    directory = tmp_path_factory.mktemp("local-lab")
    return load_spec(write_lab(directory, local_lab_data())), directory / "build"


@pytest.fixture(scope="session")
def local_lab_images(local_lab_spec):
    """The offline images in the mirror (built on first use, cached afterwards)."""
    from lab.images import build_images

    spec, build = local_lab_spec
    return build_images(spec, build)
