"""The lab bridge: the host side of the lab network, shared by every provider that
puts nodes on this host (namespaces, or VMs bridged to it)."""

from __future__ import annotations

import hashlib
import ipaddress

from lab.errors import ProviderError
from lab.host.proc import run
from lab.spec import LabSpec


def short_tag(name: str, width: int) -> str:
    """``name`` if it fits in ``width`` chars, else a prefix plus a hash (stable, unique)."""
    if len(name) <= width:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:4]
    return name[: width - 4] + digest


def bridge_name(spec: LabSpec) -> str:
    """hrl-<lab>, within the kernel's 15-character interface names."""
    return f"hrl-{short_tag(spec.name, 11)}"


class LabBridge:
    """The bridge with the host's lab address, and the FORWARD rule that lets the nodes'
    frames through (bridged frames pass iptables with br_netfilter, and FORWARD may
    default to DROP)."""

    def __init__(self, spec: LabSpec):
        self.spec = spec
        self.name = bridge_name(spec)

    def _forward_rule(self) -> list[str]:
        comment = f"ha-registry-lab {self.spec.name}"
        return ["FORWARD", "-i", self.name, "-o", self.name,
                "-m", "comment", "--comment", comment, "-j", "ACCEPT"]  # fmt: skip

    def exists(self) -> bool:
        return run(["ip", "link", "show", self.name], check=False).returncode == 0

    def host_networks(self) -> list[tuple[str, ipaddress.IPv4Interface]]:
        """(interface, address) of every IPv4 address on this host."""
        found = []
        for line in run(["ip", "-o", "-4", "addr", "show"]).stdout.splitlines():
            fields = line.split()
            if "inet" in fields:
                found.append((fields[1], ipaddress.IPv4Interface(fields[fields.index("inet") + 1])))
        return found

    def check_free(self) -> None:
        """Two labs (or a lab and the host) on one subnet would answer each other's
        addresses: refuse before anything is made. A wider network around ours (docker0's
        172.17.0.0/16 around 172.17.8.0/24) is left alone: the narrower route wins."""
        ours = self.spec.network.network
        for interface, address in self.host_networks():
            other = address.network
            narrower_or_equal = other.prefixlen >= ours.prefixlen
            if interface != self.name and other.overlaps(ours) and narrower_or_equal:
                raise ProviderError(
                    f"network.subnet {ours} overlaps {address.network} on {interface} "
                    "(another lab, or this host's own network): choose another subnet"
                )

    def ensure(self) -> None:
        net = self.spec.network
        self.check_free()
        if not self.exists():
            run(["ip", "link", "add", self.name, "type", "bridge"])
        address = f"{net.host}/{net.prefixlen}"
        shown = run(["ip", "-o", "addr", "show", "dev", self.name]).stdout
        if f" {address} " not in shown:
            run(["ip", "addr", "add", address, "dev", self.name])
        run(["ip", "link", "set", self.name, "up"])
        if run(["iptables", "-C", *self._forward_rule()], check=False).returncode != 0:
            run(["iptables", "-I", *self._forward_rule()])

    def remove(self) -> None:
        while run(["iptables", "-D", *self._forward_rule()], check=False).returncode == 0:
            pass
        if self.exists():
            run(["ip", "link", "del", self.name])
