"""The Vagrant provider on libvirt: the same VagrantProvider, driving vagrant-libvirt.

What differs from VirtualBox, and why:

- **Host side.** The VMs join the lab bridge (:class:`lab.host.LabHost`, the host's lab
  address is on it), so the image mirror and image builds are the same as the local
  provider's. The shared directory is served by nfs-ganesha in userspace
  (:mod:`lab.providers.libvirt.nfs`): this host kind has no kernel nfsd, and 9p
  forbids snapshots of running VMs. libvirtd itself is started by :mod:`.host` where
  no service manager runs it; the box the VMs boot is built by :mod:`.box`.
- **Checkpoints.** ``vagrant snapshot restore --no-start`` is not honoured by
  vagrant-libvirt (it reverts each domain straight to the snapshot's state) and
  ``snapshot save`` takes each VM at a different moment. So every domain is paused
  first: all snapshots and the copy of the shared directory are one instant, and a
  restore brings back paused domains; the shared directory is put back (ganesha
  restarted for fresh caches) before any of them runs again. Guests then resume at
  the snapshot's clock, so each one's clock is set from the host over SSH.
- **Teardown** removes, beyond what ``vagrant destroy`` removes, any domain or disk
  volume named for the lab, the lab's own management network, the bridge and mirror
  (``LabHost.teardown``) and the NFS server. libvirtd stays: it is shared.
"""

from __future__ import annotations

import re
import shutil
import stat
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lab.errors import ProviderError, UnknownName
from lab.host import LabHost
from lab.host.proc import tcp_open
from lab.images import build_images, offline_images, substitutes
from lab.nodes import Capabilities, NodeAccess
from lab.providers.libvirt import host as libvirt_host
from lab.providers.libvirt.box import BOX_NAME, ensure_box, lab_image_seed
from lab.providers.libvirt.nfs import UserspaceNfs
from lab.providers.vagrant import SNAPSHOTS_DIR, VagrantProvider
from lab.remote import Remote, RemoteError, known_hosts_file
from lab.render import libvirt_management_network
from lab.spec import LabSpec

PLUGIN_MISSING = "the vagrant-libvirt plugin is missing: run ./setup.sh"
LOGS_DIR = "logs"
CLOCK_TIMEOUT = 60.0
BOOT_TIMEOUT = 600.0  # an emulated guest boots in minutes
# QEMU without KVM (TCG): docker commands take 10-20 s that take one natively, and a
# service's first answer comes minutes late. The phases' waits scale by this.
EMULATED_PACE = 4.0


def box_providers(machine_readable: str) -> dict[str, set[str]]:
    """``vagrant box list --machine-readable`` -> box name -> its providers."""
    boxes: dict[str, set[str]] = {}
    name = ""
    for line in machine_readable.splitlines():
        fields = line.split(",", 3)
        if len(fields) < 4:
            continue
        if fields[2] == "box-name":
            name = fields[3].strip()
            boxes.setdefault(name, set())
        elif fields[2] == "box-provider" and name:
            boxes[name].add(fields[3].strip())
    return boxes


def pool_volumes(vol_list: str) -> list[str]:
    """Volume names from ``virsh vol-list POOL`` (libvirt 9 has no ``--name`` for it)."""
    rows = vol_list.splitlines()[2:]  # a "Name Path" header and a rule
    return [row.split()[0] for row in rows if row.strip()]


def not_traversable(path: Path) -> Path | None:
    """The first directory above ``path`` that other users (QEMU's) cannot enter."""
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.stat().st_mode & stat.S_IXOTH:
            return parent
    return None


class LibvirtProvider(VagrantProvider):
    """The lab's nodes as vagrant-libvirt VMs (QEMU, software emulation by default)."""

    name = "libvirt"
    # Debian's kernel and systemd in the box; IPVS is checked on the nodes after up.
    capabilities = Capabilities(ipvs=True, systemd=True, fleet=False)

    def __init__(self, spec: LabSpec, build: Path, *, say: Callable[[str], None] = print):
        super().__init__(spec, build, say=say, vm_provider="libvirt")
        emulated = spec.box.libvirt_driver == "qemu"
        self.capabilities = Capabilities(
            ipvs=True, systemd=True, fleet=False, pace=EMULATED_PACE if emulated else 1.0
        )
        self.lab_host = LabHost(spec, self.build)
        self.nfs = UserspaceNfs(spec, self.build)
        self.domains = [f"{spec.name}-{machine}" for machine in self.machines]
        self._nodes: list[NodeAccess] | None = None

    # --- lifecycle -------------------------------------------------------------

    def up(self) -> None:
        """Host network, images and NFS first (the VMs need them at boot), then `vagrant up`."""
        self._preflight()

        self.lab_host.ensure()
        if self.spec.box.libvirt == BOX_NAME:  # the kit's box, with this lab's images in it
            ensure_box(seed=lab_image_seed(self.spec, self.build, say=self.say))
        else:
            build_images(self.spec, self.build, say=self.say)  # also starts the mirror
        self.nfs.ensure_running()
        (self.build / LOGS_DIR).mkdir(parents=True, exist_ok=True)
        super().up()
        self._check_ipvs()
        self.set_clocks()

    def destroy(self) -> None:
        """Everything of the lab, whatever state a failed run left; safe to run twice."""

        libvirt_host.ensure_libvirt(printer=self.say)
        if self._vagrant_has_machines():
            # vagrant validates the whole Vagrantfile first, and it names the lab bridge
            self.lab_host.bridge.ensure()
            super().destroy()
        shutil.rmtree(self.build / SNAPSHOTS_DIR, ignore_errors=True)
        self._remove_leftover_domains()
        self._remove_management_network()
        self.nfs.stop()
        self.lab_host.teardown()
        known_hosts_file(self.build).unlink(missing_ok=True)
        # libvirtd itself stays: other labs and the box share it (.host stops it).

    def power_off(self, node: str) -> None:
        """`virsh destroy`: the domain stops at once, as when its power is cut."""
        libvirt_host.virsh("destroy", self._domain(node))

    def power_on(self, node: str) -> None:
        """`virsh start`, then wait for SSH and set its clock (it boots at the host's time,
        but a drill may have paused it)."""
        libvirt_host.virsh("start", self._domain(node))
        self._wait_for_ssh(node)
        self.set_clocks()

    def _domain(self, node: str) -> str:
        if node not in self.machines:
            raise UnknownName(f"{node!r} is not a node of lab {self.spec.name}")
        return f"{self.spec.name}-{node}"

    def _wait_for_ssh(self, node: str) -> None:
        access = next(n for n in self.nodes() if n.name == node)
        deadline = time.monotonic() + BOOT_TIMEOUT
        while not tcp_open(access.address, access.port, timeout=2):
            if time.monotonic() > deadline:
                raise ProviderError(f"{node} did not answer SSH {BOOT_TIMEOUT:.0f}s after start")
            time.sleep(2)

    def nodes(self) -> list[NodeAccess]:
        # One `vagrant ssh-config` per process (seconds each on a busy host): the
        # management addresses are DHCP leases by MAC and survive snapshot restores.
        if self._nodes is None:
            self._nodes = super().nodes()
        return self._nodes

    def image_substitutes(self) -> tuple[str, str]:
        """The same images as the local provider: the nodes pull from the same mirror."""
        return substitutes(self.spec, self.lab_host.mirror)

    def offline_images(self) -> dict[str, str]:
        """The local provider's offline images (the box holds them under the same tags)."""
        return offline_images(self.spec, self.lab_host.mirror)

    # --- checkpoints -----------------------------------------------------------

    def snapshot_save(self, name: str) -> None:
        """All domains paused, snapshotted as ``name``, the shared dir copied, resumed."""
        self._pause_all()
        try:
            self._vagrant(
                f"snapshot save {name}",
                lambda v: v.command("snapshot", "save", "--force", name),
                echo=True,
            )
            self._save_shared(name)
        finally:
            self._resume_all()
        self.set_clocks()

    def snapshot_list(self) -> list[str]:
        """Checkpoints every domain has and whose shared-directory copy exists, sorted.

        From virsh rather than `vagrant snapshot list`: Vagrant's start-up took seconds
        on every call, and a replay listed twice before restoring."""
        per_domain = [
            set(libvirt_host.virsh("snapshot-list", domain, "--name", check=False).split())
            for domain in self.domains
        ]
        common = set.intersection(*per_domain) if per_domain else set()
        return sorted(name for name in common if self._shared_copy(name).is_dir())

    def snapshot_restore(self, name: str) -> None:
        """Domains reverted (paused), shared dir put back, NFS restarted, then resumed.

        The domains are the snapshots vagrant-libvirt took (libvirt snapshots named as
        the checkpoint); virsh reverts all three at once, where `vagrant snapshot
        restore` started Vagrant and went machine by machine."""
        existing = self.snapshot_list()
        if name not in existing:
            known = ", ".join(existing) or "none"
            raise ProviderError(f"no checkpoint named {name!r} (checkpoints: {known})")
        self._pause_all()
        with ThreadPoolExecutor(max_workers=len(self.domains)) as pool:
            reverts = [
                pool.submit(libvirt_host.virsh, "snapshot-revert", domain, name, "--paused")
                for domain in self.domains
            ]
        for revert in reverts:
            revert.result()
        self._pause_all()  # already paused; kept for a domain libvirt left running
        self.nfs.restart_with(lambda: self._restore_shared(name))
        self._resume_all()
        self.set_clocks()

    def set_clocks(self) -> None:
        """Each guest's clock from the host's (guests resume at the snapshot's time)."""
        remote = Remote(self.nodes(), known_hosts_file(self.build), printer=None)
        try:
            results = remote.run_all(
                lambda _node: f"sudo date -u -s @{time.time():.3f} >/dev/null",
                timeout=CLOCK_TIMEOUT,
                stream=False,
            )
        except RemoteError as exc:
            raise ProviderError(f"setting the guests' clocks failed: {exc}") from None
        finally:
            remote.close()
        failed = [name for name, result in results.items() if not result.ok]
        if failed:
            raise ProviderError(f"setting the clock failed on {', '.join(failed)}")

    # --- libvirt -------------------------------------------------------------

    def _preflight(self) -> None:

        plugins = self._vagrant("plugin list", lambda v: v.output("plugin", "list"))
        if "vagrant-libvirt" not in plugins:
            raise ProviderError(PLUGIN_MISSING)
        libvirt_host.ensure_libvirt(printer=self.say)
        box = self.spec.box.libvirt
        if box != BOX_NAME:  # the kit's own box is built in up()
            listing = self._vagrant(
                "box list", lambda v: v.output("box", "list", "--machine-readable")
            )
            if "libvirt" not in box_providers(listing).get(box, set()):
                raise ProviderError(f"the Vagrant box {box} (libvirt) is missing: add it first")
        blocked = not_traversable(self.build.resolve())
        if blocked is not None:
            raise ProviderError(
                f"QEMU (user libvirt-qemu) cannot enter {blocked}: "
                "put the build directory elsewhere (--out) or chmod o+x it"
            )

    def _vagrant_has_machines(self) -> bool:
        """Vagrant still records a VM of the lab (else `vagrant destroy` has nothing to do)."""
        machines = self.build / ".vagrant" / "machines"
        return (self.build / "Vagrantfile").exists() and any(
            (machines / m / "libvirt" / "id").exists() for m in self.machines
        )

    def _domain_states(self) -> dict[str, str]:

        states = {}
        for domain in self.domains:
            out = libvirt_host.virsh("domstate", domain, check=False).strip()
            states[domain] = out or "missing"
        return states

    def _pause_all(self) -> None:

        for domain, state in self._domain_states().items():
            if state == "running":
                libvirt_host.virsh("suspend", domain)

    def _resume_all(self) -> None:

        for domain, state in self._domain_states().items():
            if state == "paused":
                libvirt_host.virsh("resume", domain)

    def _check_ipvs(self) -> None:
        """Swarm's VIPs and routing mesh need IPVS: say so now rather than in a phase."""
        remote = Remote(self.nodes()[:1], known_hosts_file(self.build), printer=None)
        try:
            result = remote.run(
                self.machines[0], "sudo modprobe ip_vs", timeout=CLOCK_TIMEOUT, stream=False
            )
        finally:
            remote.close()
        if not result.ok:
            raise ProviderError(
                f"the box's kernel has no IPVS (modprobe ip_vs: {result.stderr.strip()}): "
                "rebuild the box with `inv lab.box`"
            )

    def _remove_management_network(self) -> None:
        """The lab's own management network (see the Vagrantfile), once no VM uses it."""

        name = libvirt_management_network(self.spec)[0]
        xml = libvirt_host.virsh("net-dumpxml", name, check=False)
        if not xml or re.search(r"connections='\d+'", xml):
            return
        libvirt_host.virsh("net-destroy", name, check=False)
        libvirt_host.virsh("net-undefine", name, check=False)

    def _remove_leftover_domains(self) -> None:
        """Domains and disks named for the lab that vagrant no longer knows (lost .vagrant)."""

        for domain, state in self._domain_states().items():
            if state == "missing":
                continue
            if state != "shut off":
                libvirt_host.virsh("destroy", domain, check=False)
            libvirt_host.virsh(
                "undefine", domain, "--snapshots-metadata", "--remove-all-storage", check=False
            )
        volumes = pool_volumes(libvirt_host.virsh("vol-list", "default", check=False))
        prefix = f"{self.spec.name}-"
        for volume in volumes:
            if volume.startswith(prefix) and volume[len(prefix) :].split(".")[0] in self.machines:
                libvirt_host.virsh("vol-delete", volume, "--pool", "default", check=False)
