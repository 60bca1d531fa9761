#!/usr/bin/env bash
# Install what the kit and its tests need on Debian 12 (run as root).
# Safe to run again: apt and pip skip what is already there.
set -euo pipefail
cd "$(dirname "$0")"

if [ "$(id -u)" != 0 ]; then
  echo "setup.sh: run as root (it installs Debian packages): sudo ./setup.sh" >&2
  exit 2
fi

DEBIAN_PACKAGES=(
  # validators of the rendered files
  vagrant kmod ignition docker-registry haproxy nginx systemd keepalived
  # the local provider: one dockerd and sshd per network namespace, state on btrfs
  docker.io openssh-server openssh-client iproute2 iptables util-linux procps curl btrfs-progs
  # offline images and the host-side mirror
  skopeo debootstrap redis-server redis-tools
  # real VMs: vagrant-libvirt on QEMU (the kit starts libvirtd itself), and `inv lab.box`
  # (debootstrap, sfdisk/partx into a loop device, qemu-img)
  vagrant-libvirt libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu
  qemu-system-x86 qemu-utils dnsmasq-base fdisk
  # the VMs' shared /mnt/docker_reg: an NFS server in userspace (these kernels have no nfsd)
  nfs-ganesha nfs-ganesha-vfs rpcbind
  # trainees: the S3 client they make the bucket with (local nodes see the host's
  # binaries); headless Chromium, which the workbook's test opens the HTML in
  s3cmd chromium
)
export DEBIAN_FRONTEND=noninteractive
missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# Debian starts no services here (no systemd); the kit starts what it needs itself.
# libvirtd re-probes QEMU (seconds) on every call while its qemu user may not open
# /dev/kvm, which here belongs to another group. The VMs still run on TCG.
if [ -e /dev/kvm ] && id libvirt-qemu >/dev/null 2>&1; then
  usermod -aG "$(stat -c %G /dev/kvm)" libvirt-qemu
fi
python3 -m pip install -q -e '.[test]'
echo "setup.sh: ready"
