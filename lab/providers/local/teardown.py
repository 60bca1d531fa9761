"""Removing one local node completely: its processes, mounts, namespaces and link."""

from __future__ import annotations

from lab.host.mounts import unmount_all_under
from lab.providers.local import namespaces, power
from lab.providers.local.layout import NodeLayout


def remove_node(node: NodeLayout) -> None:
    power.power_off(node, graceful=False)
    namespaces.remove_namespaces(node)
    unmount_all_under(node.run_dir, node.state_dir)
