"""``inv lab.box``: the real box, built once per cache dir, registered, inspected, removable.

Needs root, debootstrap's mirror, loop devices and libvirt (./setup.sh installs it all).
The first build takes about 4-5 min on 2 cores; later runs reuse the cached box.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lab.errors import ProviderError
from lab.host.mounts import mounts_under
from lab.providers.libvirt import box
from lab.providers.libvirt import host as libvirt_host
from lab.providers.libvirt.host import ensure_libvirt, virsh
from lab.spec import load_spec
from tests.helpers import run_inv
from tests.system.local_lab import local_lab_data, write_lab

BOX_LAB = "boxlab"
BOX_SUBNET = "10.232.11"  # the test lab's own bridge and mirror, never a user's lab


@pytest.fixture(scope="module")
def box_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(lab.yaml, build dir) of a lab of its own; destroyed after the module (bridge, mirror)."""
    directory = tmp_path_factory.mktemp("box-lab")
    spec_file = write_lab(directory, local_lab_data(BOX_LAB, BOX_SUBNET))
    build = directory / "build"
    try:
        yield spec_file, build
    finally:
        done = run_inv("lab.destroy", "--spec", str(spec_file), "--out", str(build))
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def inv_box(box_lab: tuple[Path, Path]) -> Callable[..., str]:
    spec_file, build = box_lab

    def run(*args: str) -> str:
        result = run_inv("lab.box", "--spec", str(spec_file), "--out", str(build), *args)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout + result.stderr

    return run


@pytest.fixture(scope="module")
def first_run(inv_box: Callable[..., str]) -> str:
    """The output of the first ``inv lab.box`` of this session (a build, or a cache hit)."""
    return inv_box()


@pytest.fixture(scope="module")
def seed(first_run: str, box_lab: tuple[Path, Path]) -> box.ImageSeed:
    spec_file, build = box_lab
    return box.lab_image_seed(load_spec(spec_file), build, say=lambda _line: None)


@pytest.fixture(scope="module")
def box_root(first_run: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The registered box.img, as raw, mounted read-only (no guestfish here: loop + partx)."""
    raw = tmp_path_factory.mktemp("box-image") / "disk.raw"
    image = box.registered_box_dir() / "box.img"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(image), str(raw)], check=True)
    try:
        with (
            box.attached_disk(raw, read_only=True) as (_, partition),
            box.mounted(partition, raw.parent / "mnt", read_only=True) as root,
        ):
            yield root
    finally:
        raw.unlink()


@pytest.mark.parametrize("stop", [ProviderError, KeyboardInterrupt])
def test_an_interrupted_disk_step_leaves_no_mount_and_no_loop_device(
    stop: type[BaseException], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """grub-install is the step with the most held: a loop device, a mount and /dev, /proc, /sys
    bound into the image. Stop there (failure or Ctrl-C): everything must be released."""
    real_run = box._run

    def run(argv: list[str], **kwargs: object) -> str:
        if argv[0] == "chroot":
            assert len(mounts_under(tmp_path)) == 4  # the image and dev, proc, sys in it
            raise stop("stopped in grub-install")
        return real_run(argv, **kwargs)

    monkeypatch.setattr(box, "_run", run)
    paths = box.BoxPaths(tmp_path)
    paths.work.mkdir()
    for directory in ("boot", "etc"):
        (tmp_path / "root" / directory).mkdir(parents=True)
    raw = paths.work / "disk.raw"
    with pytest.raises(stop):
        box._make_disk(tmp_path / "root", raw, paths)
    assert mounts_under(tmp_path) == []
    attached = subprocess.run(["losetup", "-j", str(raw)], capture_output=True, text=True)
    assert attached.stdout == ""


def test_libvirt_answers_with_a_running_default_pool() -> None:
    ensure_libvirt()
    assert "Running hypervisor: QEMU" in virsh("version")
    assert "running" in virsh("pool-info", "default")


def test_missing_libvirt_is_one_line_naming_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(libvirt_host, "libvirt_answers", lambda timeout=10: False)
    absent = (tmp_path / "libvirtd", Path("/run/libvirt/libvirt-sock"))
    monkeypatch.setitem(libvirt_host.DAEMONS, "libvirtd", absent)
    with pytest.raises(ProviderError, match=r"libvirtd is missing: run \./setup\.sh"):
        ensure_libvirt()


def test_box_is_registered_with_its_inputs_hash(seed: box.ImageSeed) -> None:
    listing = subprocess.run(
        ["vagrant", "box", "list", "-i"], capture_output=True, text=True, check=True
    ).stdout
    assert f"{box.BOX_NAME} (libvirt, 0)" in listing
    assert f"inputs: {box.inputs_digest(seed)}" in listing
    assert box.pool_volume_name() in box.box_volumes()


def test_the_lab_images_are_in_the_box_as_the_mirror_serves_them(
    seed: box.ImageSeed, box_root: Path
) -> None:
    # Swarm runs a service's image by the digest the mirror gave `docker stack deploy`;
    # a box image with that repo digest starts without a pull in the emulated guest.
    assert any("s3-standin" in reference for reference, _ in seed.images)
    repositories = json.loads(
        (box_root / "var/lib/docker/image/overlay2/repositories.json").read_text()
    )["Repositories"]
    for reference, digest in seed.images:
        name = reference.rpartition(":")[0]
        known = repositories.get(name) or repositories.get(f"docker.io/{name}") or {}
        assert any(key.endswith(f"@{digest}") for key in known), (reference, sorted(known))
    assert not (box_root / "var/lib/docker/network").exists()  # docker0 is the guest's own


def test_second_run_reuses_the_build_and_the_registration(inv_box: Callable[..., str]) -> None:
    out = inv_box()
    assert "building box" not in out
    assert "cached build" in out
    assert "already registered with these inputs" in out
    assert "libvirt volume" in out and "in place" in out


def test_inputs_hash_changes_with_the_package_list(monkeypatch: pytest.MonkeyPatch) -> None:
    before = box.inputs_digest()
    monkeypatch.setattr(box, "PACKAGES", (*box.PACKAGES, "htop"))
    assert box.inputs_digest() != before


def test_box_boots_from_mbr_with_serial_console_and_stable_names(box_root: Path) -> None:
    grub = (box_root / "boot/grub/grub.cfg").read_text()
    assert "net.ifnames=0" in grub and "console=ttyS0" in grub
    assert (box_root / "boot/grub/i386-pc/core.img").exists()
    assert (box_root / "vmlinuz").exists() and (box_root / "initrd.img").exists()
    fstab = (box_root / "etc/fstab").read_text()
    assert fstab.startswith("UUID=") and " / ext4 " in fstab


def test_kernel_has_what_swarm_overlays_and_9p_need(box_root: Path) -> None:
    (modules,) = (box_root / "usr/lib/modules").iterdir()
    found = {p.name.split(".ko")[0] for p in modules.rglob("*.ko*")}
    assert {"overlay", "br_netfilter", "ip_vs", "vxlan", "9p", "9pnet_virtio"} <= found


def test_docker_ssh_and_time_sync_are_baked_in_and_enabled(box_root: Path) -> None:
    for binary in ("usr/sbin/dockerd", "usr/sbin/sshd", "usr/bin/sudo", "usr/sbin/hwclock"):
        assert (box_root / binary).exists(), binary
    units = box_root / "etc/systemd/system"
    assert (units / "multi-user.target.wants/docker.service").is_symlink()
    assert (units / "sysinit.target.wants/ha-registry-lab-hwclock.service").is_symlink()
    assert "hwclock --hctosys" in (units / "ha-registry-lab-hwclock.service").read_text()
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        assert os.readlink(units / timer) == "/dev/null", timer


def test_vagrant_user_has_the_insecure_key_and_passwordless_sudo(box_root: Path) -> None:
    passwd = (box_root / "etc/passwd").read_text()
    assert any(line.startswith("vagrant:x:1000:") for line in passwd.splitlines())
    keys = box_root / "home/vagrant/.ssh/authorized_keys"
    assert keys.read_text() == box.vagrant_public_key()
    assert keys.stat().st_mode & 0o777 == 0o600
    assert "NOPASSWD:ALL" in (box_root / "etc/sudoers.d/vagrant").read_text()


def test_each_vm_gets_its_own_identity(box_root: Path) -> None:
    assert (box_root / "etc/machine-id").read_text() == ""
    assert not list((box_root / "etc/ssh").glob("ssh_host_*"))


def test_remove_leaves_no_box_and_no_volume_and_is_safe_twice(
    first_run: str, inv_box: Callable[..., str]
) -> None:
    """Runs last in this file: it removes the box, then puts it back from the cache.

    It refuses (and fails here) while VM disks build on the box's volume.
    """
    try:
        out = inv_box("--remove")
        assert "removed" in out
        listing = subprocess.run(["vagrant", "box", "list"], capture_output=True, text=True).stdout
        assert box.BOX_NAME not in listing
        assert box.box_volumes() == []
        assert "nothing to remove" in inv_box("--remove")
    finally:
        again = inv_box()  # the libvirt lab tests need it back: no rebuild
    assert "building box" not in again and "vagrant box add" in again
