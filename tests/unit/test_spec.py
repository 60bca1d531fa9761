"""lab.yaml loading: the default lab, and malformed files refused one line at a time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lab.spec import SpecError, load_spec, parse_spec
from tests.helpers import REPO, run_inv


def test_default_lab_is_the_tutorials_topology(default_lab: dict[str, Any]) -> None:
    spec = parse_spec(default_lab)
    assert [n.name for n in spec.nodes] == ["coreos1", "coreos2", "coreos3"]
    assert [n.ip for n in spec.nodes] == ["172.17.8.101", "172.17.8.102", "172.17.8.103"]
    assert [i.port for i in spec.minio.instances] == [9001, 9002, 9003, 9004]
    assert [i.data for i in spec.minio.instances] == [
        f"/mnt/docker_reg/minio/f{n}" for n in range(1, 5)
    ]
    placed = [i.node for i in spec.minio.instances]
    assert sorted(set(placed)) == ["coreos1", "coreos2", "coreos3"]  # one node takes two
    assert spec.bucket.name == "docker"
    assert spec.registry.port == 5000
    assert spec.loadbalancer.kind == "traefik"
    assert spec.nfs.mount == "/mnt/docker_reg"
    assert ":" in spec.minio.image and not spec.minio.image.endswith(":latest")


def _set(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    *parents, last = path.split(".")
    target: Any = data
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return data


# Each case: (id, how to break lab.yaml, a fragment the one error line must contain)
MALFORMED: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    (
        "bad-ip",
        lambda d: _set(d, "nodes.1.ip", "10.0.0"),
        "nodes[1].ip: '10.0.0' is not an IPv4 address",
    ),
    (
        "duplicate-node-name",
        lambda d: {**d, "nodes": [*d["nodes"], {"name": "coreos2", "ip": "172.17.8.104"}]},
        "nodes[3].name: 'coreos2' is used by another node",
    ),
    (
        "duplicate-ip",
        lambda d: _set(d, "nodes.2.ip", "172.17.8.101"),
        "nodes[2].ip: '172.17.8.101' is used by another node",
    ),
    (
        "ip-outside-subnet",
        lambda d: _set(d, "nodes.0.ip", "192.168.9.5"),
        "nodes[0].ip: '192.168.9.5' is outside the lab subnet 172.17.8.0/24",
    ),
    (
        "port-twice-on-node",
        lambda d: _set(d, "minio.instances.3.port", 9001),
        "minio.instances[3].port: port 9001 on coreos1 is already used by",
    ),
    (
        "minio-unknown-node",
        lambda d: _set(d, "minio.instances.1.node", "coreos9"),
        "minio.instances[1].node: 'coreos9' is not a node of this lab",
    ),
    ("unknown-top-key", lambda d: {**d, "nodez": []}, "nodez: unknown key; did you mean 'nodes'?"),
    (
        "unknown-nested-key",
        lambda d: _set(d, "registry.prot", 5000),
        "registry.prot: unknown key; did you mean 'port'?",
    ),
    (
        "wrong-type-memory",
        lambda d: _set(d, "nodes.0.memory", "lots"),
        "nodes[0].memory: 'lots' is not a whole number",
    ),
    ("wrong-type-nodes", lambda d: _set(d, "nodes", "coreos1"), "nodes: 'coreos1' is not a list"),
    (
        "bad-lb-kind",
        lambda d: _set(d, "loadbalancer.kind", "apache"),
        "loadbalancer.kind: 'apache' is not one of 'traefik', 'haproxy' or 'nginx'",
    ),
    (
        "unpinned-image",
        lambda d: _set(d, "minio.image", "minio/minio:latest"),
        "minio.image: 'minio/minio:latest' is not an image pinned to a tag",
    ),
    (
        "too-few-minio",
        lambda d: _set(d, "minio.instances", d["minio"]["instances"][:3]),
        "minio.instances: distributed MinIO needs at least 4 instances, got 3",
    ),
    ("missing-minio", lambda d: {k: v for k, v in d.items() if k != "minio"}, "minio: is required"),
    (
        "bad-subnet",
        lambda d: _set(d, "network.subnet", "172.17.8.0/33"),
        "network.subnet: '172.17.8.0/33' is not an IPv4 network",
    ),
    (
        "bad-hostname",
        lambda d: _set(d, "nodes.0.name", "CoreOS_1"),
        "nodes[0].name: 'CoreOS_1' is not a valid hostname",
    ),
    (
        "port-out-of-range",
        lambda d: _set(d, "registry.port", 70000),
        "registry.port: 70000 input should be less than or equal to 65535",
    ),
    (
        "bad-bucket-policy",
        lambda d: _set(d, "bucket.policy", "public"),
        "bucket.policy: 'public' is not one of 'private' or 'public-readwrite'",
    ),
    (
        "minio-data-outside-nfs",
        lambda d: _set(d, "minio.instances.0.data", "/srv/f1"),
        "minio.instances[0].data: '/srv/f1' is not under nfs.mount",
    ),
    (
        "lb-port-clashes",
        lambda d: _set(d, "loadbalancer.port", 6379),
        "loadbalancer.port: port 6379 on coreos1 is already used by redis.port",
    ),
    (
        "vip-outside-subnet",
        lambda d: _set(d, "loadbalancer", {"nodes": ["coreos1", "coreos2"], "vip": "10.9.9.9"}),
        "loadbalancer.vip: '10.9.9.9' is outside the lab subnet 172.17.8.0/24",
    ),
    (
        "vip-is-a-node",
        lambda d: _set(d, "loadbalancer", {"nodes": ["coreos1", "coreos2"], "vip": "172.17.8.103"}),
        "loadbalancer.vip: '172.17.8.103' is coreos3's address",
    ),
    (
        "unknown-lb-node",
        lambda d: _set(d, "loadbalancer", {"nodes": ["coreos1", "coreos7"], "vip": "172.17.8.100"}),
        "loadbalancer.nodes[1]: 'coreos7' is not a node of this lab",
    ),
    ("empty-file", lambda d: "", "lab.yaml: the file is empty"),
    ("not-yaml", lambda d: "nodes: [coreos1\n  ip: {", "lab.yaml: not valid YAML: line"),
    ("not-a-mapping", lambda d: "- just\n- a list\n", "the top level must be a mapping"),
]


@pytest.mark.parametrize(
    ("breaker", "expected"), [(b, e) for _, b, e in MALFORMED], ids=[i for i, _, _ in MALFORMED]
)
def test_malformed_lab_fails_with_one_line_naming_the_field(
    lab_data: dict[str, Any],
    write_lab: Callable[[Any], Path],
    tmp_path: Path,
    breaker: Callable[[dict[str, Any]], Any],
    expected: str,
) -> None:
    lab_file = write_lab(breaker(lab_data))
    out = tmp_path / "build"
    result = run_inv("lab.render", "--spec", str(lab_file), "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("lab.yaml: ")
    assert expected in lines[0]
    assert not out.exists(), "a refused lab must write nothing"


def test_several_problems_give_one_line_each(lab_data: dict[str, Any]) -> None:
    _set(lab_data, "nodes.0.ip", "bad")
    _set(lab_data, "nodes.1.cpus", 0)
    _set(lab_data, "redis.colour", "red")
    with pytest.raises(SpecError) as err:
        parse_spec(lab_data)
    assert len(err.value.problems) == 3
    assert all(line.startswith("lab.yaml: ") for line in err.value.problems)


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    result = run_inv("lab.render", "--spec", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert result.stderr.strip().endswith("nope.yaml: no such file")


def test_defaults_fill_what_lab_yaml_leaves_out(lab_data: dict[str, Any]) -> None:
    for key in ("redis", "registry", "loadbalancer", "time_sync", "bucket", "box"):
        lab_data.pop(key, None)
    spec = parse_spec(lab_data)
    assert spec.redis.port == 6379 and spec.registry.port == 5000
    assert spec.loadbalancer.kind == "traefik" and spec.lb_node.name == "coreos1"


def test_load_spec_reads_the_repository_lab() -> None:
    spec = load_spec(REPO / "lab.yaml")
    assert spec.mirror == "172.17.8.1:5000"


def test_libvirt_box_and_driver_default_to_the_kits_debian_box_under_qemu(
    lab_data: dict[str, Any],
) -> None:
    spec = parse_spec(lab_data)
    assert spec.box.libvirt == "ha-registry-lab/bookworm-docker"
    assert spec.box.libvirt_driver == "qemu"  # KVM is not usable everywhere; TCG is
    lab_data["box"].update(libvirt="me/other-box", libvirt_driver="kvm")
    spec = parse_spec(lab_data)
    assert (spec.box.libvirt, spec.box.libvirt_driver) == ("me/other-box", "kvm")


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("libvirt_driver", "xen", "box.libvirt_driver: 'xen' is not one of 'qemu' or 'kvm'"),
        ("libvirt", "a box", "box.libvirt: 'a box' is not a Vagrant box name"),
    ],
)
def test_bad_libvirt_box_settings_are_one_line(
    lab_data: dict[str, Any], field: str, value: str, fragment: str
) -> None:
    lab_data["box"][field] = value
    with pytest.raises(SpecError) as caught:
        parse_spec(lab_data)
    assert len(caught.value.problems) == 1
    assert fragment in caught.value.problems[0]


def test_up_until_an_unknown_phase_is_one_line_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "build"
    result = run_inv("lab.up", "--provider", "local", "--until", "bogus", "--out", str(out))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: no phase 'bogus'; phases: swarm, labels, minio, bucket, redis, registry, "
        "fleet, traefik, verify"
    ]
    assert not out.exists()


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_phase_help_after_the_task_shows_the_options(flag: str) -> None:
    # Invoke hands a flag after `phase` to its NAME; the task shows its help instead.
    result = run_inv("phase", flag)
    assert result.returncode == 0, result.stderr
    assert "Usage: inv[oke] [--core-opts] phase" in result.stdout
    assert "--no-restore" in result.stdout and "no phase" not in result.stderr
