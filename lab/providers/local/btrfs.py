"""Node state on btrfs: a checkpoint of a node is one subvolume snapshot.

On ext4 every checkpoint copied each node's whole image store (gigabytes, tens of
seconds). XFS reflinks share the blocks but still clone ~30,000 files per node,
4-8 s with the nodes frozen; a btrfs snapshot of a node's subvolume takes the same
fraction of a second whatever it holds. An older lab's XFS volume (``local.xfs``)
keeps working with reflink copies.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from lab.host.files import copy_tree
from lab.host.proc import run, tool_path

STATE_VOLUME_SIZE = "200G"  # sparse: only what the lab writes takes disk space


def on_btrfs(path: Path) -> bool:
    return run(["stat", "-f", "-c", "%T", str(path)]).stdout.strip() == "btrfs"


def is_subvolume(path: Path) -> bool:
    """A btrfs subvolume's root directory always has inode 256."""
    return path.is_dir() and not path.is_symlink() and path.stat().st_ino == 256 and on_btrfs(path)


def make_state_dir(path: Path) -> None:
    """A node's state directory: a btrfs subvolume where it can be, so it snapshots at once."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if on_btrfs(path.parent):
        run(["btrfs", "-q", "subvolume", "create", str(path)])
    else:
        path.mkdir()


def clone_tree(source: Path, target: Path) -> None:
    """A subvolume is snapshotted (constant time, however many files); anything else copied."""
    if is_subvolume(source):
        run(["btrfs", "-q", "subvolume", "snapshot", str(source), str(target)])
    else:
        copy_tree(source, target)


def remove_tree(path: Path, depth: int = 4) -> None:
    """rmtree, but btrfs subvolumes within ``depth`` levels go whole instead of file by file."""
    if not path.exists():
        return
    for subvolume in _subvolumes_under(path, depth):
        run(["btrfs", "-q", "subvolume", "delete", str(subvolume)])
    shutil.rmtree(path, ignore_errors=True)


def _subvolumes_under(path: Path, depth: int) -> list[Path]:
    if is_subvolume(path):
        return [path]
    if depth == 0 or not path.is_dir() or path.is_symlink():
        return []
    return [sub for child in path.iterdir() for sub in _subvolumes_under(child, depth - 1)]


def state_volume(build: Path) -> Path:
    older = build / "local.xfs"  # labs made before the btrfs volume
    return older if older.exists() else build / "local.btrfs"


def mount_state_volume(image: Path, mount_point: Path) -> None:
    """A sparse btrfs file mounted over ``mount_point``: checkpoints become snapshots."""
    if not image.exists():
        run(["truncate", "-s", STATE_VOLUME_SIZE, str(image)])
        run([tool_path("mkfs.btrfs"), "-q", str(image)])
    mount_point.mkdir(parents=True, exist_ok=True)
    run(["mount", "-o", "loop", str(image), str(mount_point)])


def ensure_state_volume(state_dir: Path, volume: Path) -> None:
    """Node state on a btrfs volume, so a checkpoint is a snapshot per node."""
    if os.path.ismount(state_dir):
        return
    if volume.exists():
        mount_state_volume(volume, state_dir)  # e.g. after a reboot
        return
    if state_dir.exists() and any(state_dir.iterdir()):
        return  # a lab made before state volumes: keep it as it is
    state_dir.mkdir(parents=True, exist_ok=True)
    if not on_btrfs(state_dir):
        mount_state_volume(volume, state_dir)
