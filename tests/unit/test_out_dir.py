"""`--out` that cannot hold a lab: one line, exit 2, no traceback, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import paths
from tests.helpers import run_inv


def _refused(out: str, *args: str) -> str:
    result = run_inv(*args, "--out", out)
    text = result.stdout + result.stderr
    assert result.returncode == 2, text[-2000:]
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def test_an_out_under_proc_is_refused() -> None:
    assert "kernel file system" in _refused("/proc/x", "lab.render")
    assert not Path("/proc/x").exists()


def test_an_out_that_is_a_file_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "afile"
    file.write_text("keep me\n")
    assert "exists and is not a directory" in _refused(str(file), "lab.render")
    assert "is a file, not a directory" in _refused(str(file / "sub"), "lab.validate")
    assert file.read_text() == "keep me\n"


def test_an_unwritable_out_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root may write anywhere: the kit asks the kernel (access(2)); let it say no.
    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(paths.os, "access", lambda path, mode: Path(path) != locked)
    with pytest.raises(paths.UsageError, match="locked is not writable"):
        paths.build_dir("lab", locked / "build")
    assert list(locked.iterdir()) == []


def test_a_usable_out_is_taken(tmp_path: Path) -> None:
    assert paths.build_dir("lab", tmp_path / "new" / "build") == tmp_path / "new" / "build"
