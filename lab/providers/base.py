"""The one interface every provider implements, and what it hands the engine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class ProviderError(Exception):
    """A provider cannot do what was asked; the message is one line naming the fix."""


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
    # How many times slower than native the nodes run (QEMU software emulation is
    # several): the engine's waits and timeouts and the stacks' health checks scale by it.
    pace: float = 1.0

    def scaled(self, seconds: float) -> float:
        return seconds * self.pace

    @property
    def publish_mode(self) -> str:
        return "ingress" if self.ipvs else "host"

    @property
    def endpoint_mode(self) -> str:
        return "vip" if self.ipvs else "dnsrr"


class Provider(Protocol):
    name: str
    capabilities: Capabilities

    def up(self) -> None: ...

    def destroy(self) -> None: ...

    def status(self) -> dict[str, str]: ...

    def nodes(self) -> list[NodeAccess]: ...

    def snapshot_save(self, name: str) -> None: ...

    def snapshot_restore(self, name: str) -> None: ...

    def snapshot_list(self) -> list[str]: ...

    def snapshot_delete(self, name: str) -> None: ...
