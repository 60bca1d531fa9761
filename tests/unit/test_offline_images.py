"""Offline images carry the tag of what they hold (Debian's versions), and a lab on the
mirror runs them under those tags: `docker images` on a node tells the truth."""

from __future__ import annotations

from typing import Any

from lab.images import LOCAL_BUILD_LABEL, offline_images, recipes
from lab.spec import parse_spec
from lab.workflow import _swap_images


class FakeMirror:
    def __init__(self, images: dict[str, dict[str, str]]):
        self.images = images

    def labels(self, reference: str) -> dict[str, str] | None:
        return self.images.get(reference)


def test_each_offline_image_is_tagged_by_the_version_it_holds(lab_data: dict[str, Any]) -> None:
    by_key = {r.key: r for r in recipes(parse_spec(lab_data))}
    assert by_key["registry"].reference == "registry:2.8.2"  # lab.yaml: registry:2.8.3
    assert "docker-registry" in by_key["registry"].dockerfile
    assert by_key["redis"].reference == "redis:7.0"  # lab.yaml: redis:7.2
    assert by_key["busybox"].reference == "busybox:1.35"  # lab.yaml: busybox:1.36
    assert by_key["hello-world"].dockerfile.startswith("FROM busybox:1.35 AS busybox")
    assert by_key["haproxy"].reference == "haproxy:2.6"
    assert by_key["nginx"].reference == "nginx:1.22"


def test_a_lab_on_the_mirror_runs_the_offline_tags(lab_data: dict[str, Any]) -> None:
    spec = parse_spec(lab_data)
    swaps = offline_images(spec, FakeMirror({}))
    assert swaps == {"registry:2.8.3": "registry:2.8.2", "redis:7.2": "redis:7.0",
                     "busybox:1.36": "busybox:1.35"}  # fmt: skip
    runs = _swap_images(spec, swaps)
    assert (runs.registry.image, runs.redis.image, runs.demo.busybox_image) == (
        "registry:2.8.2", "redis:7.0", "busybox:1.35")  # fmt: skip
    assert runs.loadbalancer == spec.loadbalancer and runs.nodes == spec.nodes


def test_a_real_image_an_instructor_loaded_is_run_as_named(lab_data: dict[str, Any]) -> None:
    spec = parse_spec(lab_data)
    loaded = {"registry:2.8.3": {"maintainer": "upstream"}}
    assert "registry:2.8.3" not in offline_images(spec, FakeMirror(loaded))
    # An older kit's offline build under the upstream tag is not a real image.
    stale = {"registry:2.8.3": {LOCAL_BUILD_LABEL: "true"}}
    assert offline_images(spec, FakeMirror(stale))["registry:2.8.3"] == "registry:2.8.2"
