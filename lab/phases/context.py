"""What a phase may know about the lab while it plans: data, no connections."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lab.nodes import Capabilities
from lab.secrets import LabSecrets
from lab.spec import LabSpec

# Files a phase uploads go here, relative to the login user's home on the node.
STAGING = ".ha-registry-lab"


@dataclass
class PhaseContext:
    spec: LabSpec
    build: Path
    caps: Capabilities
    secrets: LabSecrets
    lb_kind: str
    demo: bool = False
    vars: dict[str, str] = field(default_factory=dict)

    @property
    def node_names(self) -> list[str]:
        return [n.name for n in self.spec.nodes]

    @property
    def leader(self) -> str:
        return self.spec.nodes[0].name

    def ip(self, node: str) -> str:
        return self.spec.node(node).ip

    def file(self, relative: str) -> Path:
        return self.build / relative

    def staged(self, node: str, name: str) -> str:
        """Where an uploaded file lands on ``node`` (per node: nodes may share a home)."""
        return f"{STAGING}/{node}/{name}"

    @property
    def registry_port(self) -> int:
        return self.spec.registry.port

    @property
    def lb_address(self) -> str:
        """The lab's front address and port: the virtual IP if there is one, else the LB node."""
        return f"{self.spec.front_address}:{self.spec.loadbalancer.port}"

    @property
    def lb_node_names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.spec.lb_nodes)
