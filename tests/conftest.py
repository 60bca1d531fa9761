"""Fixtures for every test: the default lab as data, and a way to write variants of it.

The fast loop (no root, no VMs) is ``tests/unit/``; ``tests/system/`` builds real
namespaces, dockerds and VMs as root, and its tests carry the ``system`` marker.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import REPO, run_inv

__all__ = ["REPO", "run_inv"]


SYSTEM_DIR = Path(__file__).parent / "system"


def _is_system(item: pytest.Item) -> bool:
    return SYSTEM_DIR in Path(str(item.fspath)).parents


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests/system; run the fast tests first, in pytest-randomly's shuffled order
    (each must pass alone and in any order), then the system tests in file order:
    a module there shares one lab and ends by destroying it."""
    for item in items:
        if _is_system(item):
            item.add_marker(pytest.mark.system)
    fast = [item for item in items if not _is_system(item)]
    system = sorted((item for item in items if _is_system(item)),
                    key=lambda item: (str(item.fspath), item.location[1]))  # fmt: skip
    items[:] = fast + system


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
