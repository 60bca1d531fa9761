"""The host side without root: what the lab bridge refuses before it makes anything."""

from __future__ import annotations

import ipaddress

import pytest

from lab.errors import ProviderError
from lab.host.bridge import LabBridge, bridge_name
from lab.spec import load_spec
from tests.helpers import REPO


def _bridge_among(monkeypatch: pytest.MonkeyPatch, *others: tuple[str, str]) -> LabBridge:
    bridge = LabBridge(load_spec(REPO / "lab.yaml"))  # 172.17.8.0/24
    found = [(name, ipaddress.IPv4Interface(address)) for name, address in others]
    monkeypatch.setattr(bridge, "host_networks", lambda: found)
    return bridge


def test_another_lab_on_the_same_subnet_is_refused_in_one_line(monkeypatch) -> None:
    bridge = _bridge_among(monkeypatch, ("hrl-other", "172.17.8.1/24"))
    with pytest.raises(ProviderError, match=r"172.17.8.0/24 overlaps 172.17.8.0/24 on hrl-other"):
        bridge.check_free()


def test_a_narrower_network_inside_the_lab_is_refused(monkeypatch) -> None:
    bridge = _bridge_among(monkeypatch, ("wlan0", "172.17.8.129/25"))
    with pytest.raises(ProviderError, match="choose another subnet"):
        bridge.check_free()


def test_docker0_around_the_lab_and_the_labs_own_bridge_are_fine(monkeypatch) -> None:
    spec = load_spec(REPO / "lab.yaml")
    bridge = _bridge_among(
        monkeypatch,
        ("docker0", "172.17.0.1/16"),  # wider: the lab's /24 route wins
        (bridge_name(spec), "172.17.8.1/24"),  # this lab's own bridge, from an earlier up
        ("eth0", "192.0.2.2/24"),
    )
    bridge.check_free()


class _Mirror:
    """A mirror that holds only the images named (labels() is None for the others)."""

    def __init__(self, *held: str):
        self.held = set(held)

    def labels(self, reference: str) -> dict[str, str] | None:
        return {} if reference in self.held else None


def test_nodes_are_seeded_with_the_images_their_phases_run() -> None:
    from lab.images import S3_STANDIN, phase_images

    spec = load_spec(REPO / "lab.yaml")
    seeded = phase_images(spec, _Mirror())  # nothing loaded: stand-ins and offline tags
    assert seeded == [S3_STANDIN, "redis:7.0", "registry:2.8.2", "haproxy:2.6",
                      "hello-world:linux"]  # fmt: skip
    loaded = phase_images(spec, _Mirror(spec.minio.image, spec.loadbalancer.traefik_image))
    assert loaded[0] == spec.minio.image and loaded[3] == spec.loadbalancer.traefik_image
    front_door = load_spec(REPO / "labs" / "ha-front-door.yaml")
    assert phase_images(front_door, _Mirror())[-1] == front_door.loadbalancer.keepalived_image
