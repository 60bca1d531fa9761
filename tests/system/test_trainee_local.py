"""A trainee on the local provider: reset a phase, type the tutorial's commands over
`inv lab.ssh`, get graded; then a broken lab is graded fast, with hints.

One lab (`hrl-trainee`, 10.213.21.0/24) is brought up for the module, up to minio,
and destroyed at the end, also when a test fails.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import run_inv

LAB_NAME = "hrl-trainee"
SUBNET = "10.213.21"
STACK = "minio_stack"  # the tutorial's name, and the default lab.yaml's


def _trainee_spec(default_lab: dict[str, Any]) -> dict[str, Any]:
    data = yaml.safe_load(yaml.safe_dump(default_lab))
    data["name"] = LAB_NAME
    data["network"] = {"subnet": f"{SUBNET}.0/24"}
    for i, node in enumerate(data["nodes"], start=1):
        node["ip"] = f"{SUBNET}.{10 + i}"
    assert data["minio"]["stack"] == STACK
    return data


Lab = tuple[Path, Path]


def _inv(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    spec_file, out = lab
    if "--" in args:  # the task's options go before the node's command
        at = args.index("--")
        args = (*args[:at], "--spec", str(spec_file), "--out", str(out), *args[at:])
        return run_inv(*args)
    return run_inv(*args, "--spec", str(spec_file), "--out", str(out))


def _tail(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout[-3000:] + "\n--- stderr ---\n" + result.stderr[-3000:]


@pytest.fixture(scope="module")
def lab(default_lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("trainee")
    spec_file = root / "lab.yaml"
    spec_file.write_text(yaml.safe_dump(_trainee_spec(default_lab), sort_keys=False))
    out = root / "build"
    try:
        up = run_inv("lab.up", "--provider", "local", "--until", "minio",
                     "--spec", str(spec_file), "--out", str(out))  # fmt: skip
        assert up.returncode == 0, _tail(up)
        yield spec_file, out
    finally:
        done = run_inv(
            "lab.destroy", "--spec", str(spec_file), "--out", str(out), "--provider", "local"
        )
        assert done.returncode == 0, done.stderr[-2000:]


def _on(lab: Lab, node: str, *command: str) -> subprocess.CompletedProcess[str]:
    """What a trainee types: `inv lab.ssh NODE -- COMMAND`."""
    return _inv(lab, "lab.ssh", node, "--", *command)


def test_lab_ssh_runs_one_command_on_a_node_and_passes_its_exit_code(lab: Lab) -> None:
    hostname = _on(lab, "coreos2", "hostname")
    assert hostname.returncode == 0, _tail(hostname)
    assert hostname.stdout.strip() == "coreos2"
    failed = _on(lab, "coreos1", "sh", "-c", "'exit 3'")
    assert failed.returncode == 3, _tail(failed)
    unknown = _on(lab, "coreos9", "true")
    assert unknown.returncode == 2 and "no node 'coreos9'" in unknown.stderr


def test_a_trainee_resets_minio_types_the_tutorial_and_passes(lab: Lab) -> None:
    reset = _inv(lab, "phase", "minio", "--reset")
    assert reset.returncode == 0, _tail(reset)
    assert "restoring checkpoint after-labels" in reset.stdout
    assert f"docker stack deploy -c ~/lab/docker-compose-secrets.yaml {STACK}" in reset.stdout
    assert "inv phase minio --check" in reset.stdout
    gone = _on(lab, "coreos1", "docker", "service", "ls", "-q")
    assert gone.returncode == 0 and not gone.stdout.strip(), "reset left services behind"
    status = json.loads(_inv(lab, "lab.status", "--json").stdout)
    assert status["phases"]["minio"]["progress"] == "your turn (reset)"

    for command in (
        ["mkdir", "-p", *(f"/mnt/docker_reg/minio/f{i}" for i in (1, 2, 3, 4))],
        ["docker", "secret", "create", "access_key", "~/lab/access_key"],
        ["docker", "secret", "create", "secret_key", "~/lab/secret_key"],
        ["docker", "stack", "deploy", "-c", "~/lab/docker-compose-secrets.yaml", STACK],
    ):
        typed = _on(lab, "coreos1", *command)
        assert typed.returncode == 0, _tail(typed)

    graded = _inv(lab, "phase", "minio", "--check")
    assert graded.returncode == 0, _tail(graded)
    assert "FAIL" not in graded.stdout
    record = json.loads(_inv(lab, "lab.status", "--json").stdout)["phases"]["minio"]
    assert record["progress"] == "done by hand, graded", record
    assert record["last_attempt"]


def test_a_broken_lab_fails_within_ten_seconds_with_hints(lab: Lab) -> None:
    removed = _on(lab, "coreos1", "docker", "stack", "rm", STACK)
    assert removed.returncode == 0, _tail(removed)
    _on(lab, "coreos1", "for i in $(seq 60); do docker service ls -q | grep -q . "
        "&& sleep 1 || break; done")  # fmt: skip
    started = time.monotonic()
    graded = _inv(lab, "phase", "minio", "--check")
    seconds = time.monotonic() - started
    assert graded.returncode == 1, _tail(graded)
    assert seconds < 10, f"--check took {seconds:.1f} s"
    lines = graded.stdout.splitlines()
    fails = [ln for ln in lines if ln.startswith("FAIL:")]
    hints = [ln for ln in lines if ln.startswith("  hint (on ")]
    assert fails and len(hints) == len(fails), _tail(graded)
    assert "FAIL: minio1 runs on coreos1: not there" in graded.stdout
    assert f"docker service ps --no-trunc {STACK}_minio1" in graded.stdout
    assert graded.stdout.count("FAIL: minio1 runs on coreos1") == 1, "each failure once"
    assert "coreos1 on coreos1" not in graded.stdout
    record = json.loads(_inv(lab, "lab.status", "--json").stdout)["phases"]["minio"]
    assert record["progress"].startswith("failed by hand"), record
