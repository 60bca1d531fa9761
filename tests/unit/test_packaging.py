"""A non-editable install (`pip install .`) carries every module of the kit, and its tasks
run from a folder that has the templates and tasks.py but no lab/ source."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.helpers import REPO

KIT_FILES = ("tasks.py", "lab.yaml", "Vagrantfile.j2", "stacks", "cloud-config", "schemas")


def _wheel(tmp_path: Path) -> Path:
    source = tmp_path / "source"  # a copy: building must not write into the checkout
    skip = shutil.ignore_patterns("build", ".git", "*.egg-info", "__pycache__", ".*cache")
    shutil.copytree(REPO, source, ignore=skip)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"),
         str(source)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    return next((tmp_path / "dist").glob("*.whl"))


def test_the_wheel_holds_every_module_of_lab(tmp_path: Path) -> None:
    with zipfile.ZipFile(_wheel(tmp_path)) as wheel:
        shipped = {name for name in wheel.namelist() if name.startswith("lab/")}
    source = {p.relative_to(REPO).as_posix() for p in (REPO / "lab").rglob("*.py")}
    assert source - shipped == set()


def test_tasks_run_from_the_installed_package(tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(_wheel(tmp_path)) as wheel:
        wheel.extractall(site)
    kit = tmp_path / "kit"  # what a user has beside the installed package
    kit.mkdir()
    for name in KIT_FILES:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
        copy(REPO / name, kit / name)
    env = {**os.environ, "PYTHONPATH": str(site)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, *args], cwd=kit, env=env, capture_output=True,
                              text=True, timeout=300)  # fmt: skip

    where = run("-c", "import lab.host; print(lab.host.__file__)")
    assert where.stdout.startswith(str(site)), where.stdout + where.stderr
    listed = run("-m", "invoke", "--list")
    assert listed.returncode == 0 and "lab.render" in listed.stdout, listed.stderr
    rendered = run("-m", "invoke", "lab.render", "--out", str(tmp_path / "out"))
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    assert (tmp_path / "out" / "stacks" / "minio.yaml").exists()
