"""Shared terms between providers and everything above them: how a node is reached,
and what the nodes' kernel and init system offer. A leaf: imports nothing of the kit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class NodeAccess:
    """How the engine reaches one node over SSH."""

    name: str
    address: str
    user: str
    key_file: Path
    port: int = 22


@dataclass(frozen=True)
class Capabilities:
    """What the nodes' kernel and init system offer; the renderer adapts to it."""

    ipvs: bool = True  # swarm VIPs and the ingress routing mesh work
    systemd: bool = True  # nodes run systemd (host units can be installed)
    fleet: bool = False  # fleetctl exists on the nodes
    esp: bool = True  # the kernel has IPsec ESP: `--opt encrypted` overlays pass traffic
    # How many times slower than native the nodes run (QEMU software emulation is
    # several): the engine's waits and timeouts and the stacks' health checks scale by it.
    pace: float = 1.0
    # The nodes' NIC on the lab network, where a virtual IP goes: Vagrant's VMs have it
    # second (eth0 is Vagrant's NAT or management network), a namespace has only eth0.
    lab_interface: str = "eth1"

    def scaled(self, seconds: float) -> float:
        return seconds * self.pace

    @property
    def publish_mode(self) -> str:
        return "ingress" if self.ipvs else "host"

    @property
    def endpoint_mode(self) -> str:
        return "vip" if self.ipvs else "dnsrr"
