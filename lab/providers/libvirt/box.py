"""``inv lab.box``: a Vagrant box for libvirt built from Debian packages, offline.

Debian bookworm (debootstrap from the host's apt mirror) with the generic kernel, systemd,
OpenSSH, sudo, the vagrant user with Vagrant's insecure key, and docker.io baked in:
installing Docker inside a QEMU-emulated guest takes minutes, the box makes it free.
The lab's images are pulled into it too (:class:`ImageSeed`), for the same reason.

The box is cached under ``cache_dir()/box/`` keyed by a hash of every input (packages,
files, the chroot script, the kernel command line, the Vagrant key, the images' digests,
``RECIPE_VERSION``),
and registered with ``vagrant box add`` only when the registered box carries another hash
(kept in the box's ``info.json``, which ``vagrant box list -i`` shows).

Building needs root: debootstrap, a loop device with ``partx -a`` (``losetup -P`` makes
no partition devices where the host kernel lacks MSDOS partition support), and
``grub-install`` into that device from a chroot. Every mount and loop device is released
in ``finally`` blocks, so a failure or Ctrl-C leaves none behind.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import glob
import hashlib
import json
import os
import shutil
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from lab.errors import ProviderError
from lab.host import LabHost
from lab.host.mounts import mounts_under
from lab.host.proc import run
from lab.images import APT_SOURCES, Builder, build_images, debian_mirror_url, recipes
from lab.output import make_console
from lab.paths import cache_dir
from lab.providers.libvirt import host as libvirt_host
from lab.spec import LabSpec

BOX_NAME = "ha-registry-lab/bookworm-docker"
SEED_NAME = "_box-seed"  # the seeding dockerd's run dir and cgroup under RUN_ROOT
RECIPE_VERSION = "1"  # bump when the build steps below change in a way the data does not show
SUITE = "bookworm"
DISK_GB = 10  # virtual size; the qcow2 holds only what is written
# The cloud kernel lacks 9p (CONFIG_NET_9P unset), which the shared folder needs.
KERNEL_PACKAGE = "linux-image-amd64"
# Docker swarm overlay networks and the 9p shared folder need these (=y or =m).
REQUIRED_KERNEL_OPTIONS = (
    "OVERLAY_FS",
    "BRIDGE_NETFILTER",
    "IP_VS",
    "VXLAN",
    "NET_9P",
    "NET_9P_VIRTIO",
    "9P_FS",
)
PACKAGES = (
    KERNEL_PACKAGE,
    "grub-pc",
    "systemd-sysv",
    "udev",
    "dbus",
    "libpam-systemd",
    "openssh-server",
    "sudo",
    "iproute2",
    "ifupdown",
    "isc-dhcp-client",
    "util-linux-extra",  # hwclock
    "kmod",
    "procps",
    "less",
    "netbase",
    "ca-certificates",
    "curl",  # the phases' checks
    "rsync",  # vagrant's rsync synced folders
    "nfs-common",  # an NFS-mounted /mnt/docker_reg where a server exists
    "docker.io",
)
MASKED_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
)
# net.ifnames=0: eth0/eth1 as Vagrant's Debian guest support expects; apparmor=0: Debian's
# docker.io cannot load its profile without apparmor_parser (not installed, slow to boot).
KERNEL_CMDLINE = "ro net.ifnames=0 biosdevname=0 apparmor=0 console=tty0 console=ttyS0,115200"
# Drivers a QEMU guest never loads (GPUs, sound, wireless, media...): a third of the box.
PRUNED_MODULES = (
    "sound",
    "drivers/gpu",
    "drivers/media",
    "drivers/infiniband",
    "drivers/iio",
    "drivers/comedi",
    "drivers/isdn",
    "drivers/staging",
    "drivers/bluetooth",
    "drivers/net/wireless",
    "net/wireless",
    "net/mac80211",
    "net/bluetooth",
)
VAGRANT_KEY_GLOB = "/usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub"

HWCLOCK_UNIT = """\
[Unit]
Description=Set the system clock from the RTC (a VM restored from a snapshot resumes at its time)
DefaultDependencies=no
Before=time-set.target sysinit.target
Wants=time-set.target

[Service]
Type=oneshot
ExecStart=/usr/sbin/hwclock --hctosys --utc

[Install]
WantedBy=sysinit.target
"""
SSH_KEYGEN_UNIT = """\
[Unit]
Description=Generate this VM's own SSH host key (the box ships none)
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key

[Install]
WantedBy=multi-user.target
"""
INTERFACES = "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n"
FILES = {
    "etc/hostname": "bookworm-docker\n",
    "etc/hosts": "127.0.0.1 localhost\n127.0.1.1 bookworm-docker\n",
    "etc/network/interfaces": INTERFACES,
    # ed25519 only: an RSA host key took 17 s to 1 min 46 s of the first boot under TCG
    "etc/ssh/sshd_config.d/host-key.conf": "HostKey /etc/ssh/ssh_host_ed25519_key\n",
    "etc/sudoers.d/vagrant": "vagrant ALL=(ALL) NOPASSWD:ALL\n",
    "etc/systemd/system/ha-registry-lab-hwclock.service": HWCLOCK_UNIT,
    "etc/systemd/system/ha-registry-lab-ssh-keygen.service": SSH_KEYGEN_UNIT,
    # Vagrant restarts ifup@IFACE for every interface when it sets the hostname, and
    # ifup@docker0 (or a veth, vxlan) fails: ifupdown knows only ethN. Skip the others.
    "etc/systemd/system/ifup@.service.d/only-eth.conf": (
        "[Service]\nExecCondition=/bin/sh -c 'case %I in eth*) exit 0;; esac; exit 1'\n"
    ),
    "usr/sbin/policy-rc.d": "#!/bin/sh\n# no daemon starts inside the build chroot\nexit 101\n",
}
# Runs in the chroot after the packages are in; the rootfs becomes the box as it is after this.
CHROOT_SCRIPT = f"""\
set -eu
useradd -m -s /bin/bash -G sudo,docker vagrant
echo vagrant:vagrant | chpasswd
chmod 440 /etc/sudoers.d/vagrant
install -d -m 700 -o vagrant -g vagrant /home/vagrant/.ssh
install -m 600 -o vagrant -g vagrant /tmp/vagrant.pub /home/vagrant/.ssh/authorized_keys
systemctl enable docker.service containerd.service ssh.service \\
    ha-registry-lab-hwclock.service ha-registry-lab-ssh-keygen.service
systemctl mask {" ".join(MASKED_UNITS)}
for kernel in /usr/lib/modules/*; do
    (cd "$kernel/kernel" && rm -rf {" ".join(PRUNED_MODULES)})
    depmod "${{kernel##*/}}"
done
update-initramfs -u -k all
rm -f /etc/ssh/ssh_host_* /usr/sbin/policy-rc.d /tmp/vagrant.pub /etc/resolv.conf
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
apt-get clean
rm -rf /var/lib/apt/lists/* /var/log/*.log /var/log/apt/*
"""
GRUB_CFG = """\
set timeout=0
insmod part_msdos
insmod ext2
search --no-floppy --fs-uuid --set=root {uuid}
linux /vmlinuz root=UUID={uuid} {cmdline}
initrd /initrd.img
boot
"""

console = make_console(soft_wrap=True)


@dataclass(frozen=True)
class ImageSeed:
    """The lab's images, pulled into the box's /var/lib/docker when it is built.

    A pull in an emulated guest unpacks at well under 1 MB/s: the S3 stand-in alone
    took 11 min per node. Pulled on the host through the lab's mirror instead, each
    image keeps the digest the nodes are told to run, so swarm starts it without a pull.
    """

    mirror: str  # host:port of the lab's image mirror
    images: tuple[tuple[str, str], ...]  # (reference, manifest digest)


@dataclass(frozen=True)
class BoxPaths:
    root: Path  # cache_dir()/box

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def log(self) -> Path:  # outside work/, which goes away even when a build fails
        return self.root / "build.log"

    def box_file(self, digest: str) -> Path:
        return self.root / f"bookworm-docker-{digest[:16]}.box"


# ------------------------------------------------------------------ public API


def ensure_box(out: Console | None = None, seed: ImageSeed | None = None) -> str:
    """Build the box if its inputs changed and register it if needed; returns BOX_NAME."""
    out = out or console
    digest = inputs_digest(seed)
    paths = BoxPaths(cache_dir() / "box")
    with _lock(paths.root):
        box_file = paths.box_file(digest)
        if box_file.exists():
            out.print(f"box {BOX_NAME}: cached build {box_file.name} (inputs {digest[:12]})")
        else:
            _build(paths, digest, out, seed)
        if registered_digest() == digest:
            out.print(f"box {BOX_NAME}: already registered with these inputs")
        else:
            _step(out, "vagrant box add", lambda: _box_add(box_file))
        _drop_stale_box_files(paths, keep=box_file)
        _ensure_pool_volume(out)
    return BOX_NAME


def remove_box(out: Console | None = None) -> None:
    """Remove the box from Vagrant and its volumes from the libvirt pool (safe to run twice)."""

    out = out or console
    libvirt_host.ensure_libvirt(out.print)
    volumes = box_volumes()
    in_use = _volumes_in_use(volumes)
    if in_use:
        raise ProviderError(
            f"the box's volume is the base of VM disks ({', '.join(in_use)}): "
            "destroy those VMs first (inv lab.destroy)"
        )
    removed = []
    if registered_box_dir().exists() or f"{BOX_NAME} (" in _vagrant("box", "list"):
        _vagrant("box", "remove", "--force", "--all", BOX_NAME)
        removed.append(f"vagrant box {BOX_NAME}")
    for volume in volumes:
        libvirt_host.virsh("vol-delete", "--pool", _pool(), volume)
        removed.append(f"libvirt volume {volume}")
    if removed:
        out.print("removed " + "; ".join(removed))
    else:
        out.print(f"box {BOX_NAME}: nothing to remove")
    out.print(f"(the built box stays cached in {cache_dir() / 'box'} for a quick re-add)")


def box_task(spec: LabSpec, build: Path, remove: bool = False) -> None:
    """What ``inv lab.box [--remove]`` runs: the lab's images first, then the box with them."""
    if remove:
        remove_box()
    else:
        ensure_box(seed=lab_image_seed(spec, build))


def lab_image_seed(spec: LabSpec, build: Path, say: Callable[[str], None] = print) -> ImageSeed:
    """Build the lab's images into its mirror (cached) and name them with their digests."""
    build_images(spec, build, say=say)  # also starts the lab's bridge and mirror
    mirror = LabHost(spec, build).mirror
    images = []
    for recipe in recipes(spec):
        digest = mirror.manifest_digest(recipe.reference)
        if digest is None:
            raise ProviderError(f"{recipe.reference} is not in the mirror {mirror.url}")
        images.append((recipe.reference, digest))
    return ImageSeed(mirror.address, tuple(images))


def inputs_digest(seed: ImageSeed | None = None) -> str:
    """sha256 over everything that decides the box's content."""
    inputs = {
        "recipe": RECIPE_VERSION,
        "suite": SUITE,
        "disk_gb": DISK_GB,
        "packages": sorted(PACKAGES),
        "masked": list(MASKED_UNITS),
        "cmdline": KERNEL_CMDLINE,
        "files": FILES,
        "chroot": CHROOT_SCRIPT,
        "grub": GRUB_CFG,
        "vagrant_key": vagrant_public_key(),
        "images": [list(image) for image in seed.images] if seed else [],
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def vagrant_public_key() -> str:
    """Vagrant's insecure public key, as the Debian vagrant package ships it."""
    found = sorted(glob.glob(VAGRANT_KEY_GLOB))
    if not found:
        raise ProviderError("vagrant's insecure key is missing: run ./setup.sh (apt vagrant)")
    return Path(found[-1]).read_text()


def registered_box_dir() -> Path:
    """Where ``vagrant box add`` unpacked the box (version 0: it was added from a file)."""
    home = Path(os.environ.get("VAGRANT_HOME") or Path.home() / ".vagrant.d")
    return home / "boxes" / BOX_NAME.replace("/", "-VAGRANTSLASH-") / "0" / "libvirt"


def registered_digest() -> str | None:
    try:
        info = json.loads((registered_box_dir() / "info.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return info.get("inputs")


def box_volumes() -> list[str]:
    """The box's volumes in the libvirt pool (vagrant-libvirt uploads one per box.img mtime)."""

    prefix = BOX_NAME.replace("/", "-VAGRANTSLASH-") + "_vagrant_box_image_"
    listing = libvirt_host.virsh("vol-list", _pool()).splitlines()[2:]
    names = [line.split()[0] for line in listing if line]
    return [name for name in names if name.startswith(prefix)]


def pool_volume_name() -> str:
    """The volume vagrant-libvirt looks for: box name, version 0 and box.img's mtime."""
    mtime = int((registered_box_dir() / "box.img").stat().st_mtime)
    return f"{BOX_NAME.replace('/', '-VAGRANTSLASH-')}_vagrant_box_image_0_{mtime}_box.img"


@contextlib.contextmanager
def attached_disk(raw: Path, read_only: bool = False) -> Iterator[tuple[str, str]]:
    """(loop device, its first partition) for a raw disk image; detached on exit."""
    argv = ["losetup", "-f", "--show", *(["-r"] if read_only else []), str(raw)]
    loop = _run(argv).strip()
    try:
        _run(["partx", "-a", loop])  # not losetup -P: see the module docstring
        partition = f"{loop}p1"
        if not _wait_for(lambda: Path(partition).exists(), 10):
            raise ProviderError(f"{partition} did not appear after partx -a {loop}")
        yield loop, partition
    finally:
        _run(["partx", "-d", loop], check=False)
        _run(["losetup", "-d", loop], check=False)


@contextlib.contextmanager
def mounted(device: str, target: Path, read_only: bool = False) -> Iterator[Path]:
    target.mkdir(parents=True, exist_ok=True)
    _run(["mount", *(["-o", "ro"] if read_only else []), device, str(target)])
    try:
        yield target
    finally:
        _umount(target)


# ------------------------------------------------------------------ the build


def _build(paths: BoxPaths, digest: str, out: Console, seed: ImageSeed | None) -> None:
    _check_tools()
    begun = time.monotonic()
    out.print(f"building box {BOX_NAME} (inputs {digest[:12]}): about 4 min on 2 cores")
    _clear_work(paths.work)
    paths.work.mkdir(parents=True)
    paths.log.write_text("")
    root = paths.work / "root"
    try:
        mirror = debian_mirror_url()
        _step(out, f"debootstrap {SUITE} from {mirror}", lambda: _debootstrap(root, mirror, paths))
        _step(out, "kernel, grub, systemd, ssh, docker.io", lambda: _install(root, paths))
        _check_kernel_options(root)
        if seed:
            names = ", ".join(reference for reference, _ in seed.images)
            _step(out, f"images {names}", lambda: _seed_images(root, seed))
        raw = paths.work / "disk.raw"
        _step(out, f"{DISK_GB} GiB disk image with grub", lambda: _make_disk(root, raw, paths))
        package = paths.work / "box"
        _step(out, "qcow2 (compressed)", lambda: _qcow2(raw, package / "box.img"))
        box_file = paths.box_file(digest)
        _step(out, "box file", lambda: _package(package, digest, box_file))
    finally:
        _clear_work(paths.work)
    size = box_file.stat().st_size / 2**20
    out.print(f"built {box_file} ({size:.0f} MiB) in {time.monotonic() - begun:.0f} s")


def _debootstrap(root: Path, mirror: str, paths: BoxPaths) -> None:
    argv = ["debootstrap", "--variant=minbase", SUITE, str(root), mirror]
    _run(argv, timeout=1800, log=paths.log)


def _install(root: Path, paths: BoxPaths) -> None:
    """The packages from the host's apt sources (updates and security too), then the script."""
    for relative, text in FILES.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    (root / "usr/sbin/policy-rc.d").chmod(0o755)
    shutil.copy(APT_SOURCES, root / "etc/apt/sources.list.d/debian.sources")
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    (root / "tmp/vagrant.pub").write_text(vagrant_public_key())
    apt = "DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Use-Pty=0"
    script = (
        f"set -eu\napt-get -q update\n{apt} upgrade\n"
        f"{apt} install --no-install-recommends {' '.join(PACKAGES)}\n{CHROOT_SCRIPT}"
    )
    log = paths.log
    with _chroot_mounts(root):
        _run(["chroot", str(root), "/bin/sh", "-c", script], timeout=3600, log=log)


def _seed_images(root: Path, seed: ImageSeed) -> None:
    """Pull the seed through the mirror with a host dockerd on the box's /var/lib/docker.

    Debian's docker.io on both sides (same release), overlay2 as in the guest. Pulled,
    not loaded: a pull records the repo digest (swarm then skips its own pull) and the
    layer digests (a later pull finds them present).
    """

    data_root = root / "var/lib/docker"
    builder = Builder(
        say=lambda _line: None,
        name=SEED_NAME,
        data_root=data_root,
        extra_args=("--storage-driver", "overlay2"),
    )
    builder.start(seed.mirror)
    try:
        for reference, digest in seed.images:
            builder.docker("pull", "-q", reference, timeout=900)
            pinned = builder.docker(
                "image", "inspect", "--format", '{{join .RepoDigests " "}}', reference
            )
            if digest not in pinned:
                raise ProviderError(
                    f"{reference}: pulled {pinned.strip()}, the mirror has {digest}"
                )
    finally:
        builder.stop()
    # The guest's dockerd makes its own networks (docker0 with its settings).
    shutil.rmtree(data_root / "network", ignore_errors=True)


def _check_kernel_options(root: Path) -> None:
    configs = sorted((root / "boot").glob("config-*"))
    if not configs:
        raise ProviderError(f"no kernel config in {root / 'boot'}: did {KERNEL_PACKAGE} install?")
    options = dict(
        line.split("=", 1) for line in configs[-1].read_text().splitlines() if "=" in line
    )
    missing = [o for o in REQUIRED_KERNEL_OPTIONS if options.get(f"CONFIG_{o}") not in ("y", "m")]
    if missing:
        raise ProviderError(f"{configs[-1].name} lacks {', '.join(missing)}: pick another kernel")


def _make_disk(root: Path, raw: Path, paths: BoxPaths) -> None:
    """One bootable MBR partition holding the rootfs, grub in the MBR."""
    with open(raw, "wb") as disk:
        disk.truncate(DISK_GB * 2**30)
    _run(["sfdisk", "-q", str(raw)], input="start=2048, type=83, bootable\n")
    with attached_disk(raw) as (loop, partition):
        _run(["mkfs.ext4", "-q", "-L", "root", partition])
        uuid = _run(["blkid", "-s", "UUID", "-o", "value", partition]).strip()
        with mounted(partition, paths.work / "mnt") as mnt:
            _run(["cp", "-a", f"{root}/.", str(mnt)], timeout=600)
            (mnt / "etc/fstab").write_text(f"UUID={uuid} / ext4 errors=remount-ro 0 1\n")
            grub = mnt / "boot/grub"
            grub.mkdir(parents=True, exist_ok=True)
            with _chroot_mounts(mnt):
                argv = ["grub-install", "--target=i386-pc", "--boot-directory=/boot", loop]
                _run(["chroot", str(mnt), *argv], log=paths.log)
            (grub / "grub.cfg").write_text(GRUB_CFG.format(uuid=uuid, cmdline=KERNEL_CMDLINE))
            for link in ("vmlinuz", "initrd.img"):
                if not (mnt / link).exists():
                    raise ProviderError(f"/{link} is missing in the image: grub.cfg boots it")


def _qcow2(raw: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    _run(["qemu-img", "convert", "-c", "-O", "qcow2", str(raw), str(target)], timeout=1800)


def _package(directory: Path, digest: str, box_file: Path) -> None:
    """metadata.json + info.json (our inputs hash) + box.img; uncompressed: the qcow2 is."""
    metadata = {"provider": "libvirt", "format": "qcow2", "virtual_size": DISK_GB}
    (directory / "metadata.json").write_text(json.dumps(metadata) + "\n")
    built = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    info = {"inputs": digest, "built": built, "recipe": RECIPE_VERSION, "kit": "ha-registry-lab"}
    (directory / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    partial = box_file.with_suffix(".partial")
    with tarfile.open(partial, "w") as tar:
        for name in ("metadata.json", "info.json", "box.img"):
            tar.add(directory / name, arcname=name)
    partial.rename(box_file)


def _box_add(box_file: Path) -> None:
    _vagrant("box", "add", "--force", "--name", BOX_NAME, str(box_file), timeout=1800)


def _ensure_pool_volume(out: Console) -> None:
    """Put box.img into the libvirt pool under the name vagrant-libvirt looks for.

    vagrant-libvirt would upload it at the first ``vagrant up`` through Ruby in small
    chunks (minutes here); ``virsh vol-upload`` takes seconds. Older volumes of this box
    are dropped unless a VM disk still builds on them.
    """

    libvirt_host.ensure_libvirt(out.print)
    name = pool_volume_name()
    volumes = box_volumes()
    if name in volumes:
        out.print(f"box {BOX_NAME}: libvirt volume {name} in place; nothing to do")
    else:
        image = registered_box_dir() / "box.img"

        def upload() -> None:
            libvirt_host.virsh("vol-create-as", _pool(), name, f"{DISK_GB}G", "--format", "qcow2")
            try:
                libvirt_host.virsh("vol-upload", "--pool", _pool(), name, str(image), timeout=1800)
                # qemu runs as libvirt-qemu and opens the base image read-only
                (libvirt_host.POOL_PATH / name).chmod(0o644)
            except BaseException:
                libvirt_host.virsh("vol-delete", "--pool", _pool(), name, check=False)
                raise

        _step(out, f"upload into the libvirt pool as {name}", upload)
    stale = [v for v in volumes if v != name]
    in_use = set(_volumes_in_use(stale, users_of=True))
    for volume in stale:
        if volume not in in_use:
            libvirt_host.virsh("vol-delete", "--pool", _pool(), volume)


# ------------------------------------------------------------------ helpers


def _step(out: Console, title: str, action: Callable[[], object]) -> None:
    begun = time.monotonic()
    with out.status(f"{title} ..."):
        action()
    out.print(f"  [green]done[/green] {title} ({time.monotonic() - begun:.0f} s)")


def _run(
    argv: list[str],
    *,
    check: bool = True,
    input: str | None = None,
    timeout: float = 300,
    log: Path | None = None,
) -> str:
    """Run a build command (its output also in ``log``); its stdout, or a ProviderError."""
    return run(argv, check=check, input=input, timeout=timeout, log=log).stdout


def _vagrant(*args: str, timeout: float = 300) -> str:
    return _run(["vagrant", *args], timeout=timeout)


def _pool() -> str:

    return libvirt_host.POOL_NAME


def _volumes_in_use(volumes: list[str], users_of: bool = False) -> list[str]:
    """The pool's VM disks backed by one of ``volumes`` (or, with users_of, those volumes)."""

    if not volumes:
        return []
    found = []
    for line in libvirt_host.virsh("vol-list", _pool()).splitlines()[2:]:
        name = line.split()[0] if line.strip() else None
        if name is None or name in volumes:
            continue
        xml = libvirt_host.virsh("vol-dumpxml", "--pool", _pool(), name, check=False)
        for volume in volumes:
            if f"<path>{libvirt_host.POOL_PATH / volume}</path>" in xml:
                found.append(volume if users_of else name)
    return found


@contextlib.contextmanager
def _chroot_mounts(root: Path) -> Iterator[None]:
    """/dev, /proc and /sys inside ``root`` while a chroot runs; always unmounted after."""
    mounted_here: list[Path] = []
    try:
        for source, kind, target in (("/dev", None, "dev"), ("proc", "proc", "proc"),
                                     ("sys", "sysfs", "sys")):  # fmt: skip
            point = root / target
            point.mkdir(exist_ok=True)
            argv = ["mount", "--bind", source] if kind is None else ["mount", "-t", kind, source]
            _run([*argv, str(point)])
            mounted_here.append(point)
        yield
    finally:
        for point in reversed(mounted_here):
            _umount(point)


def _umount(point: Path) -> None:
    _run(["umount", str(point)], check=False, timeout=60)
    if str(point) in mounts_under(point):  # busy: detach it now, the kernel frees it later
        _run(["umount", "-l", str(point)], check=False, timeout=60)


def _clear_work(work: Path) -> None:
    """Remove the work dir, but never through a mount (a bound /dev would lose the host's)."""
    for point in mounts_under(work):
        _run(["umount", "-l", point], check=False)
    if mounts_under(work):
        raise ProviderError(f"{work} still has mounts: unmount them, then run again")
    shutil.rmtree(work, ignore_errors=True)


def _drop_stale_box_files(paths: BoxPaths, keep: Path) -> None:
    for old in paths.root.glob("bookworm-docker-*.box*"):
        if old != keep:
            old.unlink(missing_ok=True)


def _check_tools() -> None:
    if os.geteuid() != 0:
        raise ProviderError("building the box needs root (debootstrap, loop devices, chroot)")
    tools = {
        "debootstrap": "debootstrap",
        "sfdisk": "fdisk",
        "partx": "util-linux",
        "losetup": "mount",
        "mkfs.ext4": "e2fsprogs",
        "qemu-img": "qemu-utils",
        "vagrant": "vagrant",
    }
    missing = sorted({pkg for tool, pkg in tools.items() if not shutil.which(tool)})
    if missing:
        raise ProviderError(
            f"missing tools: run ./setup.sh (or apt-get install {' '.join(missing)})"
        )


def _wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@contextlib.contextmanager
def _lock(directory: Path) -> Iterator[None]:
    """One box build at a time per cache dir (the tests and a user may both ask)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
