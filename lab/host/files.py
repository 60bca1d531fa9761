"""Directory trees on the host: copy keeping owners and links, empty in place."""

from __future__ import annotations

import shutil
from pathlib import Path

from lab.host.proc import run


def copy_tree(source: Path, target: Path) -> None:
    """``cp -a --reflink=auto``: a cheap clone where the filesystem allows, a copy elsewhere."""
    run(["cp", "-a", "--reflink=auto", "--sparse=always", str(source), str(target)], timeout=1800)


def copy_contents(source: Path, target: Path) -> None:
    """Copy what is inside ``source`` into the existing ``target`` (owners, modes, links)."""
    target.mkdir(parents=True, exist_ok=True)
    run(["cp", "-a", "--reflink=auto", f"{source}/.", str(target)], timeout=1800)


def empty_directory(path: Path) -> None:
    """Remove everything inside ``path`` but keep the directory itself: it may be an NFS
    export or a bind-mount source, which must stay the same inode."""
    if not path.is_dir():
        return
    for item in path.iterdir():
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item)
        else:
            item.unlink()
