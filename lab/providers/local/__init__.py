"""The local provider as a package: one module per part of a node (see provider.py)."""

from lab.host.cgroups import CGROUP_PREFIX
from lab.providers.local.layout import NodeLayout
from lab.providers.local.provider import LocalProvider

__all__ = ["CGROUP_PREFIX", "LocalProvider", "NodeLayout"]
