"""lab.validate: every rendered file passes its real consumer, and a broken one fails.

Nothing here is skipped: a missing validator program makes the run fail with
the package to install, which is exactly what these tests then report.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lab import validate as v
from lab.render import render
from lab.spec import LabSpec, parse_spec
from tests.helpers import REPO

ALL_VALIDATORS = {
    v.VAGRANT,
    v.IGNITION,
    v.CLOUD_CONFIG,
    v.STACK,
    v.REGISTRY,
    v.REDIS,
    v.HAPROXY,
    v.NGINX,
    v.TRAEFIK_STATIC,
    v.TRAEFIK_DYNAMIC,
    v.SYSTEMD,
    v.SHELL,
    v.JSON,
}


def _failures(results: list[v.ValidationResult]) -> str:
    return "\n".join(f"{r.file} [{r.validator}]: {r.detail}" for r in results if not r.ok)


def _tree(build: Path) -> dict[str, int]:
    """Every path under ``build`` with its mode: validation must change none of it."""
    return {p.relative_to(build).as_posix(): p.stat().st_mode for p in build.rglob("*")}


def _our_children() -> list[int]:
    """PIDs of live processes whose parent is this test process."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            children.append(int(stat.parent.name))
    return children


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory, default_lab: dict[str, Any]):
    spec = parse_spec(default_lab)
    build = render(spec, out=tmp_path_factory.mktemp("build") / spec.name).build
    return build, spec


@pytest.fixture(scope="module")
def validation_run(rendered: tuple[Path, LabSpec]) -> tuple[list[v.ValidationResult], set[int]]:
    """The default lab's results, and the children this process had before validating
    (daemons earlier tests start on purpose, such as libvirtd, are not validation's)."""
    build, spec = rendered
    before = _tree(build)
    children_before = set(_our_children())
    results = v.validate(build, spec)
    assert _tree(build) == before, "validation changed the build directory"
    return results, children_before


@pytest.fixture(scope="module")
def default_results(
    validation_run: tuple[list[v.ValidationResult], set[int]],
) -> list[v.ValidationResult]:
    return validation_run[0]


def test_default_lab_passes_every_validator(default_results: list[v.ValidationResult]) -> None:
    assert v.all_ok(default_results), _failures(default_results)
    assert {r.validator for r in default_results} == ALL_VALIDATORS


def test_every_rendered_file_is_checked(
    rendered: tuple[Path, LabSpec], default_results: list[v.ValidationResult]
) -> None:
    build, spec = rendered
    checked = {r.file for r in default_results}
    for node in spec.nodes:
        assert {f"{node.name}.ign", f"{node.name}.cloud-config.yml"} <= checked
        assert f"registry/{node.name}.yml" in checked
    rendered_files = {
        p.relative_to(build).as_posix()
        for p in build.rglob("*")
        if p.is_file() and "secrets" not in p.parts and p.name != ".rendered"
    }
    assert rendered_files == checked


def test_results_are_sorted_and_show_the_checks_really_ran(
    default_results: list[v.ValidationResult],
) -> None:
    files = [r.file for r in default_results]
    assert files == sorted(files)
    by_validator = {r.validator: r.detail for r in default_results}
    assert "HTTPS verified with the lab CA, GET /v2/ answered 401" in by_validator[v.REGISTRY]
    assert "PONG" in by_validator[v.REDIS]
    assert "systemd-analyze verify" in by_validator[v.CLOUD_CONFIG]


def test_no_process_outlives_validation(
    validation_run: tuple[list[v.ValidationResult], set[int]],
) -> None:
    results, children_before = validation_run
    assert results
    assert sorted(set(_our_children()) - children_before) == []


def test_no_secret_in_any_detail(
    rendered: tuple[Path, LabSpec], default_results: list[v.ValidationResult]
) -> None:
    build, _ = rendered
    secrets = [p.read_text().strip() for p in (build / "secrets").iterdir()]
    for result in default_results:
        assert not any(s and s in result.detail for s in secrets)


def test_print_results_reports_overall_verdict(
    default_results: list[v.ValidationResult],
) -> None:
    from rich.console import Console

    console = Console(record=True, width=200)
    assert v.print_results(default_results, console) is True
    text = console.export_text()
    assert "registry/coreos1.yml" in text and "docker-registry serve" in text
    failed = [*default_results[:-1], v.ValidationResult("x", "y", False, "broken [thing]")]
    assert v.print_results(failed, console) is False
    assert "FAIL broken [thing]" in console.export_text()


# ----------------------------------------------------------- broken files


def _replace(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert old in text, f"test setup: {old!r} not in the rendered file"
        return text.replace(old, new, 1)

    return edit


BREAKAGES = {
    "Vagrantfile": ("Vagrantfile", lambda t: t + "end\n", "syntax error, unexpected"),
    "ignition version": (
        "coreos1.ign",
        _replace('"version": "3.3.0"', '"version": "9.9.0"'),
        "unsupported config version",
    ),
    "cloud-config key": (
        "coreos2.cloud-config.yml",
        _replace("\nwrite_files:", "\nmanage_etc_hosts: true\nwrite_files:"),
        "manage_etc_hosts: unknown key",
    ),
    "stack key": (
        "stacks/busybox.yaml",
        _replace("    init: true", "    init: true\n    bogus_key: 1"),
        "bogus_key",
    ),
    "registry storage driver": (
        "registry/coreos2.yml",
        _replace("\n  s3:\n", "\n  s4:\n"),
        "StorageDriver not registered: s4",
    ),
    "redis directive": (
        "redis/redis.conf",
        lambda t: t + "bogus-directive yes\n",
        "Bad directive",
    ),
    "haproxy directive": (
        "lb/haproxy.cfg",
        _replace("    balance roundrobin", "    balance roundrobin\n    bogus-directive x"),
        "unknown keyword 'bogus-directive'",
    ),
    "nginx directive": (
        "lb/nginx.conf",
        _replace("    worker_connections 1024;", "    worker_connections 1024;\n    bogus_on 1;"),
        '[emerg] unknown directive "bogus_on"',
    ),
    "traefik static top-level key": (
        "lb/traefik.yml",
        lambda t: t + "entryPoint:\n  web: {}\n",
        "'entryPoint' was unexpected",
    ),
    "traefik dynamic nested key": (
        "lb/traefik-dynamic.yml",
        _replace("passHostHeader: true", "passHostHeadr: true"),
        "'passHostHeadr' was unexpected",
    ),
    "systemd directive": (
        "units/systemd/date.service",
        _replace("Type=oneshot", "Type=oneshot\nBogusDirective=1"),
        "Unknown key 'BogusDirective'",
    ),
}


@pytest.mark.parametrize("case", sorted(BREAKAGES))
def test_a_broken_file_fails_alone(
    case: str, rendered: tuple[Path, LabSpec], tmp_path: Path
) -> None:
    build, spec = rendered
    broken_file, edit, expected = BREAKAGES[case]
    copy_dir = tmp_path / "build"
    shutil.copytree(build, copy_dir, symlinks=True)
    target = copy_dir / broken_file
    target.write_text(edit(target.read_text()))

    results = v.validate(copy_dir, spec)

    failed = [r for r in results if not r.ok]
    assert [r.file for r in failed] == [broken_file], _failures(results)
    assert expected in failed[0].detail
    assert "\n" not in failed[0].detail


def test_a_missing_file_fails(rendered: tuple[Path, LabSpec], tmp_path: Path) -> None:
    build, spec = rendered
    copy_dir = tmp_path / "build"
    shutil.copytree(build, copy_dir, symlinks=True)
    (copy_dir / "lb" / "nginx.conf").unlink()
    failed = [r for r in v.validate(copy_dir, spec) if not r.ok]
    assert [(r.file, r.detail.split(":")[0]) for r in failed] == [("lb/nginx.conf", "missing")]


def test_a_missing_validator_fails_naming_the_package(
    rendered: tuple[Path, LabSpec], monkeypatch: pytest.MonkeyPatch
) -> None:
    build, spec = rendered
    real_which = shutil.which
    monkeypatch.setattr(
        v.shutil,
        "which",
        lambda name, *a, **k: None if name == "ignition-validate" else real_which(name, *a, **k),
    )
    results = v.validate(build, spec)
    failed = {r.file: r.detail for r in results if not r.ok}
    assert failed == {
        f"{n.name}.ign": "ignition-validate not found: apt-get install ignition" for n in spec.nodes
    }


# ---------------------------------------------------------- 5-node lab


def five_node_lab(default_lab: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(default_lab)
    data["name"] = "five"
    data["network"] = {"subnet": "10.44.0.0/24"}
    data["nodes"] = [
        {"name": f"node{i}", "ip": f"10.44.0.{10 + i}", "memory": 1024, "cpus": 1}
        for i in range(1, 6)
    ]
    for i, instance in enumerate(data["minio"]["instances"]):
        instance["node"] = f"node{i + 1}"
    data["loadbalancer"] = {"kind": "haproxy", "node": "node5", "port": 80}
    return data


def test_five_node_lab_renders_and_validates(default_lab: dict[str, Any], tmp_path: Path) -> None:
    spec = parse_spec(five_node_lab(default_lab))
    build = render(spec, out=tmp_path / "five").build

    results = v.validate(build, spec)

    assert v.all_ok(results), _failures(results)
    checked = {r.file for r in results}
    assert {f"node{i}.ign" for i in range(1, 6)} <= checked
    assert {f"registry/node{i}.yml" for i in range(1, 6)} <= checked
    haproxy = (build / "lb" / "haproxy.cfg").read_text()
    assert re.findall(r"server node\d 10\.44\.0\.1\d:5000", haproxy) == [
        f"server node{i} 10.44.0.{10 + i}:5000" for i in range(1, 6)
    ]


def test_the_table_in_a_log_keeps_file_names_whole() -> None:
    """Not a terminal (CI, `| tee`): no file name is broken across lines at 80 columns."""
    script = (
        "from lab.validate import ValidationResult, print_results\n"
        "print_results([ValidationResult('units/libvirt/coreos1.cloud-config.yml', "
        "'systemd-analyze verify', True, 'ok: 3 units verified, no warnings at all here')])\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout  # fmt: skip
    assert "units/libvirt/coreos1.cloud-config.yml" in out
    assert "ok: 3 units verified, no warnings at all here" in out
