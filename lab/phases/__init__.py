"""The tutorial's phases, in its order; each is an explanation, a plan and checks.

A phase module has TITLE, EXPLAIN, ``plan(ctx) -> list[Step]``,
``checks(ctx) -> list[Check]`` and optionally ``skip_reason(ctx)``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from lab.errors import UnknownName

PHASES = ("swarm", "labels", "minio", "bucket", "redis", "registry", "fleet", "traefik", "verify")


def phase_module(name: str) -> ModuleType:
    if name not in PHASES:
        raise UnknownName(f"no phase {name!r}; phases: {', '.join(PHASES)}")
    return importlib.import_module(f"lab.phases.{name}")
