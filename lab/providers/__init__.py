"""Providers make the lab's nodes. One registry: a name and where its class lives.

Adding a provider is a module with a class that satisfies
:class:`lab.providers.base.Provider` (``tests/unit/test_providers.py`` checks it) and
one line here. Classes are imported only when chosen, so ``inv --list`` stays fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from lab.errors import UnknownName

if TYPE_CHECKING:
    from lab.providers.base import Provider
    from lab.spec import LabSpec

PROVIDERS = {
    "vagrant": "lab.providers.vagrant:VagrantProvider",
    "libvirt": "lab.providers.libvirt.provider:LibvirtProvider",
    "local": "lab.providers.local:LocalProvider",
}
DESCRIPTIONS = {
    "vagrant": "VirtualBox VMs from the Flatcar box, as in the tutorial",
    "libvirt": "Vagrant VMs under vagrant-libvirt/QEMU, booting the kit's box",
    "local": "network namespaces on this host (root, Linux)",
}
# With no state.json saying otherwise, a lab is the workshops' VirtualBox lab.
DEFAULT_PROVIDER = "vagrant"


def provider_class(name: str) -> type[Provider]:
    if name not in PROVIDERS:
        raise UnknownName(f"unknown provider {name!r}; choose one of: {', '.join(PROVIDERS)}")
    module_name, _, class_name = PROVIDERS[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def make_provider(
    name: str, spec: LabSpec, build: Path, *, say: Callable[[str], None] = print
) -> Provider:
    return provider_class(name)(spec, build, say=say)


def help_text() -> str:
    return "; ".join(f"{name}: {text}" for name, text in DESCRIPTIONS.items())
