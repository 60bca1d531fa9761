"""The strict lab.yaml: a grammar for every string, bounds for everything, safe YAML.

Whatever the input, load_spec answers with a spec or with SpecError: a few short
lines, each naming the field, quoting at most a short excerpt of the bad value.
"""

from __future__ import annotations

import copy
import ipaddress
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import render as render_module
from lab.render import RenderError, render
from lab.spec import (
    MAX_LINE_CHARS,
    MAX_PROBLEM_LINES,
    SpecError,
    load_spec,
    parse_spec,
)
from tests.helpers import REPO, run_inv
from tests.system.local_lab import local_lab_data

DEFAULT_TEXT = (REPO / "lab.yaml").read_text()


def _set(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    *parents, last = path.split(".")
    target: Any = data
    for part in parents:
        target = target[int(part)] if part.isdigit() else target.setdefault(part, {})
    if last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return data


def _problems(data: Any) -> list[str]:
    with pytest.raises(SpecError) as refused:
        parse_spec(data)
    return refused.value.problems


def _load_text(tmp_path: Path, text: str | bytes) -> list[str]:
    path = tmp_path / "lab.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    started = time.monotonic()
    with pytest.raises(SpecError) as refused:
        load_spec(path)
    assert time.monotonic() - started < 5, "a refusal must be quick"
    return refused.value.problems


# ----------------------------------------------------------------- the YAML


LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(9)
)
MANY_ALIASES = "x: &x 1\ny: [" + ", ".join(["*x"] * 60) + "]\n"

# (id, file content, a fragment of the one line)
BAD_FILES: list[tuple[str, str | bytes, str]] = [
    ("billion-laughs", LAUGHS, "more than 10000 values (aliases expanded)"),
    ("many-aliases", MANY_ALIASES, "more than 50 aliases"),
    ("recursive-alias", "a: &a [1, *a]\n", "an alias inside the value it names"),
    ("deep-list", "a: " + "[" * 1000 + "]" * 1000 + "\n", "nested deeper than 20 levels"),
    ("deep-map", "a: " + "{a: " * 1000 + "1" + "}" * 1000 + "\n", "nested deeper than 20"),
    ("five-megabytes", "name: " + "a" * 5_000_000 + "\n", "larger than 1024 KiB"),
    ("long-scalar", "name: " + "a" * 100_000 + "\n", "a value longer than 1024 characters"),
    ("duplicate-key", DEFAULT_TEXT + "\nnodes: []\n", "the key 'nodes' is given twice"),
    ("undecodable", b"name: ha\xff\n", "line 1: not UTF-8 text (byte 0xff)"),
    ("nul-byte", "name: ha\x00x\n", "character #x0000 not allowed"),
    ("impossible-date", "name: 2024-13-45\n", "not valid YAML"),
    ("python-tag", "name: !!python/object/apply:os.system [id]\n", "not valid YAML"),
]


@pytest.mark.parametrize(
    ("text", "fragment"), [(t, f) for _, t, f in BAD_FILES], ids=[i for i, _, _ in BAD_FILES]
)
def test_a_hostile_file_is_one_short_line(tmp_path: Path, text: str | bytes, fragment: str) -> None:
    problems = _load_text(tmp_path, text)
    assert len(problems) == 1, problems
    assert problems[0].startswith("lab.yaml: ") and fragment in problems[0]
    assert len(problems[0]) < MAX_LINE_CHARS


def test_anchors_within_the_bounds_are_fine(tmp_path: Path) -> None:
    text = DEFAULT_TEXT.replace(
        "  - {name: coreos1, ip: 172.17.8.101, memory: 2048, cpus: 1}",
        "  - &node {name: coreos1, ip: 172.17.8.101, memory: 2048, cpus: 1}",
    ).replace(
        "  - {name: coreos2, ip: 172.17.8.102, memory: 2048, cpus: 1}",
        "  - {<<: *node, name: coreos2, ip: 172.17.8.102}",
    )
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    assert load_spec(path).nodes[1].memory == 2048


def test_a_file_that_never_ends_is_read_no_further_than_the_bound() -> None:
    with pytest.raises(SpecError, match="larger than 1024 KiB"):
        load_spec("/dev/zero")


# ------------------------------------------------------ invisible characters


@pytest.mark.parametrize(
    ("field", "escaped", "code"),
    [
        ("name", "ha\\ud800", "U+D800"),  # a lone surrogate
        ("name", "ha-registry\\n", "U+000A"),  # a trailing newline
        ("registry.region", "us-east-1\\nfoo: bar", "U+000A"),
        ("time_sync.interval", "hourly\\nExecStart=/bin/sh", "U+000A"),
        ("aliases.dps", "docker ps\\u202e", "U+202E"),  # right-to-left override
        ("nodes.0.name", "core\\tos1", "U+0009"),
    ],
)
def test_control_and_invisible_characters_are_refused_escaped(
    tmp_path: Path, field: str, escaped: str, code: str
) -> None:
    data = yaml.safe_load(DEFAULT_TEXT)
    _set(data, field, "PLACEHOLDER")
    text = yaml.safe_dump(data, sort_keys=False).replace("PLACEHOLDER", f'"{escaped}"')
    (problem,) = _load_text(tmp_path, text)
    assert code in problem and "control or invisible character" in problem
    assert problem.isprintable(), "the line itself must be safe to print"


# ---------------------------------------------------------------- grammars

# (field, bad value, fragment of the line)
BAD_VALUES: list[tuple[str, Any, str]] = [
    ("name", "Ha_Registry", "is not a DNS label"),
    ("name", "a" * 33, "is longer than 32 characters"),
    ("name", "lab-", "is not a DNS label"),
    ("user", "root;id", "is not a login name"),
    ("nodes.0.name", "coreos1 ", "is not a valid hostname"),
    ("nodes.0.ip", "172.17.8.101\n", "control or invisible character"),
    ("nodes.0.ip", "172.17.8.1O1", "is not an IPv4 address"),
    ("nodes.0.memory", 10**6, "less than or equal to 65536"),
    ("nodes.0.cpus", True, "True is not a whole number"),
    ("network.subnet", "172.16.0.0/12", "is not a /16 to /29 network"),
    ("network.subnet", "192.168.0.0/16", "no 192.168.x.0/24 for the libvirt management network"),
    ("network.subnet", "8.8.8.0/24", "is not private"),
    ("network.subnet", "172.17.8.1/24", "is not an IPv4 network"),
    ("network.host_ip", "172.17.8.1; id", "is not an IPv4 address"),
    ("box.name", "owner/box name", "is not a Vagrant box name"),
    ("box.url", "https://example.com/$(id).box", "is not an http(s):// or file:// URL"),
    ("box.libvirt", "a box", "is not a Vagrant box name"),
    ("nfs.export", "../../anywhere", "is not a directory inside the build directory"),
    ("nfs.export", "", "is not a directory inside the build directory"),
    ("nfs.export", ".", "is not a directory inside the build directory"),
    ("nfs.export", "nfs/../..", "has a '.' or '..' component"),
    ("nfs.export", "secrets", "is where the kit keeps its own files"),
    ("nfs.export", "registry/data", "is where the kit keeps its own files"),
    ("nfs.export", "coreos1.ign", "is where the kit keeps its own files"),
    ("nfs.export", "/proc/x", "is under /proc"),
    ("nfs.export", "/sys", "is under /sys"),
    ("nfs.export", "/etc/passwd", "exists and is not a directory"),
    ("nfs.export", "/", "is not an absolute path"),
    ("nfs.export", "/home", "is a system directory"),
    ("nfs.mount", "mnt/docker_reg", "is not an absolute path"),
    ("nfs.mount", "/dev/shm", "is under /dev"),
    ("nfs.mount", "/etc", "is a system directory"),
    ("minio.image", "minio/minio:latest", "is not an image pinned to a tag"),
    ("minio.image", "minio/minio", "is not an image pinned to a tag"),
    ("minio.network", "net work", "is not a docker network name"),
    ("minio.stack", "minio; rm -rf /", "is not a docker stack name"),
    ("minio.stack", "m" * 31, "is longer than 30 characters"),
    ("minio.instances.0.name", "$(reboot)", "is not a DNS label"),
    ("minio.instances.0.data", "/mnt/docker_reg/minio/f1 /etc", "is not an absolute path"),
    ("minio.instances.0.data", "/mnt/docker_reg/../../etc", "has a '.' or '..' component"),
    ("bucket.name", "Docker", "is not a valid S3 bucket name"),
    ("bucket.name", "a..b", "no '..', not an IP"),
    ("bucket.name", "10.0.0.1", "no '..', not an IP"),
    ("bucket.name", "xn--docker", "reserved prefix/suffix"),
    ("redis.maxmemory", "256mb\n", "control or invisible character"),
    ("redis.maxmemory", "256 mb", "is not a Redis size"),
    ("redis.maxmemory", "100gb", "is not between 1mb and 64gb"),
    ("redis.maxmemory", "512kb", "is not between 1mb and 64gb"),
    ("registry.region", "mars-1", "is not a region name"),
    ("registry.region", "us-east-1 ", "is not a region name"),
    ("registry.rootdirectory", "registry", "is not an absolute path"),
    ("registry.config_dir", "/etc/docker/registry;id", "is not an absolute path"),
    ("loadbalancer.node", "coreos1;", "is not a valid hostname"),
    ("loadbalancer.traefik_image", "traefik:v3.1 --api.insecure", "is not an image"),
    ("time_sync.interval", "every hour", "is not a systemd calendar"),
    ("time_sync.interval", "15min", "is not a systemd calendar"),
    ("demo.busybox_image", "busybox:1.36;id", "is not an image"),
    ("demo.hello_image", "hello-world:`id`", "is not an image"),
    ("aliases", {"d ps": "docker ps"}, "is not an alias name"),
    ("aliases.dps", "x" * 201, "is longer than 200 characters"),
    ("aliases.dps", "", "is not a command"),
    ("mirror_port", "5000", "'5000' is not a whole number"),
]


@pytest.mark.parametrize(
    ("field", "value", "fragment"), BAD_VALUES, ids=[f"{f}={v!r}"[:60] for f, v, _ in BAD_VALUES]
)
def test_every_field_has_a_grammar(
    lab_data: dict[str, Any], field: str, value: Any, fragment: str
) -> None:
    problems = _problems(_set(lab_data, field, value))
    assert len(problems) == 1, problems
    assert fragment in problems[0], problems[0]
    assert len(problems[0]) < MAX_LINE_CHARS


GOOD_VALUES: list[tuple[str, Any]] = [
    ("user", "vagrant"),
    ("registry.region", "eu-central-1"),
    ("registry.region", "us-gov-west-1"),
    ("registry.region", "ap-southeast-4"),
    ("time_sync.interval", "daily"),
    ("time_sync.interval", "*:0/15"),
    ("time_sync.interval", "*-*-* 03:00:00"),
    ("time_sync.interval", "Mon..Fri 03:00"),
    ("redis.maxmemory", "1gb"),
    ("redis.maxmemory", "512m"),
    ("redis.maxmemory", "100000000"),
    ("nfs.export", "shared/data"),
    ("box.url", "https://example.com/boxes/flatcar.box?token=a1&v=2"),
    ("box.name", "flatcar/stable"),
    ("minio.image", "localhost:5000/minio/minio:RELEASE.2024-05-28T17-19-04Z"),
    ("aliases.dps", "docker ps --format '{{.Names}}' | grep -v $(hostname); echo done"),
]


@pytest.mark.parametrize(("field", "value"), GOOD_VALUES, ids=[f for f, _ in GOOD_VALUES])
def test_real_values_are_accepted(lab_data: dict[str, Any], field: str, value: Any) -> None:
    parse_spec(_set(lab_data, field, value))


def test_an_absolute_export_may_be_any_other_host_directory(
    lab_data: dict[str, Any], tmp_path: Path
) -> None:
    assert parse_spec(_set(lab_data, "nfs.export", str(tmp_path))).nfs.export == str(tmp_path)
    link = tmp_path / "to-proc"
    link.symlink_to("/proc")
    assert "is under /proc" in _problems(_set(lab_data, "nfs.export", str(link)))[0]


# ------------------------------------------------------------------ bounds


def test_at_most_nine_nodes(lab_data: dict[str, Any]) -> None:
    lab_data["nodes"] = [{"name": f"n{i}", "ip": f"172.17.8.{10 + i}"} for i in range(10)]
    for instance in lab_data["minio"]["instances"]:
        instance["node"] = "n1"
    assert _problems(lab_data) == ["lab.yaml: nodes: 10 entries; at most 9 are allowed"]


def test_at_most_sixteen_minio_instances(lab_data: dict[str, Any]) -> None:
    lab_data["minio"]["instances"] = [
        {"name": f"minio{i}", "node": "coreos1", "port": 9000 + i, "data": f"/mnt/docker_reg/{i}"}
        for i in range(1, 18)
    ]
    assert _problems(lab_data) == ["lab.yaml: minio.instances: 17 entries; at most 16 are allowed"]


def test_ports_the_nodes_already_use_are_refused(lab_data: dict[str, Any]) -> None:
    problems = _problems(_set(lab_data, "loadbalancer.port", 22))
    assert problems == ["lab.yaml: loadbalancer.port: port 22 on coreos1 is already used by SSH"]


def test_two_instances_may_not_share_a_data_directory(lab_data: dict[str, Any]) -> None:
    problems = _problems(_set(lab_data, "minio.instances.1.data", "/mnt/docker_reg/minio/f1"))
    assert any("is used by another instance" in p for p in problems)


# ------------------------------------------------------------- error lines


def test_a_huge_value_is_quoted_as_a_short_excerpt(lab_data: dict[str, Any]) -> None:
    (problem,) = _problems(_set(lab_data, "minio.stack", "x" * 5_000_000))
    assert "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'…" in problem
    assert len(problem) < 120


def test_a_huge_unknown_key_is_quoted_as_a_short_excerpt(lab_data: dict[str, Any]) -> None:
    lab_data["k" * 100_000] = 1
    (problem,) = _problems(lab_data)
    assert problem.startswith("lab.yaml: 'kkkkkkkk") and "…: unknown key" in problem
    assert len(problem) < MAX_LINE_CHARS


def test_many_problems_give_a_bounded_number_of_lines(lab_data: dict[str, Any]) -> None:
    for i in range(300):
        lab_data[f"unknown{i}"] = i
    problems = _problems(lab_data)
    assert len(problems) == MAX_PROBLEM_LINES + 1
    assert problems[-1] == "… and 280 more problems"


def test_a_bad_file_through_the_task_is_exit_2_short_lines_nothing_written(
    tmp_path: Path,
) -> None:
    spec_file = tmp_path / "lab.yaml"
    spec_file.write_text(LAUGHS)
    out = tmp_path / "build"
    result = run_inv("lab.render", "--spec", str(spec_file), "--out", str(out))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "lab.yaml: line 5, column 8: more than 10000 values (aliases expanded)"
    ]
    assert not out.exists()


# ------------------------------------------- what the spec accepts, render can use


def _lab_on(data: dict[str, Any], subnet: str) -> dict[str, Any]:
    data = copy.deepcopy(data)
    network = ipaddress.IPv4Network(subnet)
    data["network"] = {"subnet": subnet}
    for node, address in zip(data["nodes"], list(network.hosts())[1:], strict=False):
        node["ip"] = str(address)
    return data


# The edges: the whole of 172.16/12 in /16s, both halves of 192.168/16, the smallest.
EDGE_SUBNETS = [
    *(f"172.{n}.0.0/16" for n in range(16, 32)),
    "192.168.0.0/17",
    "192.168.128.0/17",
    "192.168.122.0/24",
    "10.0.0.0/16",
    "10.255.255.248/29",
]


@pytest.mark.parametrize("subnet", EDGE_SUBNETS)
def test_every_subnet_the_spec_accepts_is_one_render_can_use(
    lab_data: dict[str, Any], subnet: str
) -> None:
    spec = parse_spec(_lab_on(lab_data, subnet))
    bridge = ipaddress.IPv4Interface(render_module.docker_bridge(spec))
    assert not bridge.network.overlaps(spec.network.network)
    _, management = render_module.libvirt_management_network(spec)
    assert not ipaddress.IPv4Network(management).overlaps(spec.network.network)


def test_an_export_that_is_a_file_in_the_build_directory_writes_nothing(
    lab_data: dict[str, Any], tmp_path: Path
) -> None:
    build = tmp_path / "build"
    build.mkdir()
    (build / "nfs").write_text("a file where the share would be")
    with pytest.raises(RenderError, match="exists and is not a directory"):
        render(parse_spec(lab_data), build)
    assert [p.name for p in build.iterdir()] == ["nfs"]


@pytest.mark.parametrize(
    ("name", "subnet"),
    [
        ("hrl-test", "10.213.7"),
        ("hrl-fail", "10.213.8"),
        ("boxlab", "10.232.11"),
        ("vmlab", "10.232.9"),
        ("e2e", "10.231.7"),
        ("hrl-bench", "10.213.12"),
    ],
)
def test_the_test_labs_are_accepted(name: str, subnet: str) -> None:
    parse_spec(local_lab_data(name, subnet))
