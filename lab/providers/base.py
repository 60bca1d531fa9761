"""The one interface every provider implements.

A provider only makes nodes: it brings them up and down, saves and restores
checkpoints of all of them, says how to reach them, and which images they can run.
Everything else (render, phases, the engine) meets it only through this Protocol;
every provider's constructor is ``(spec, build, *, say=print)``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from lab.nodes import Capabilities, NodeAccess


@runtime_checkable
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

    def image_substitutes(self) -> tuple[str, str]:
        """(MinIO image, load balancer kind) the nodes can really run."""
        ...

    def offline_images(self) -> dict[str, str]:
        """lab.yaml's image -> the image the nodes really run under its own version's tag
        (an offline build of a Debian package); empty where the real images are pulled."""
        ...

    def power_off(self, node: str) -> None:
        """Cut one node's power: no clean shutdown, its network gone (drills)."""
        ...

    def power_on(self, node: str) -> None:
        """Boot a node that was powered off; it rejoins the lab by itself."""
        ...
