"""End to end on real VMs: `inv lab.up --provider libvirt` (vagrant-libvirt, QEMU).

CI cannot afford the whole lab on emulated VMs, so the lab stops after the labels
phase (`--until labels`); then `inv phase labels` rolls all three VMs back to the
after-swarm checkpoint (real libvirt snapshots) and replays; then `inv lab.destroy`
must leave no domain, volume, network, iptables rule or process of the lab.

Never skipped: a missing tool fails with the reason. The lab is destroyed in the
fixture's teardown whatever happens. The build directory is under the repository's
build/ because QEMU runs as libvirt-qemu and cannot enter pytest's 0700 tmp dirs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.providers.libvirt.host import ensure_libvirt
from lab.providers.libvirt.provider import pool_volumes
from tests.helpers import REPO

LAB_NAME = "vmlab"
SUBNET = "10.232.9"
BRIDGE = "hrl-vmlab"  # the local provider's name for the lab bridge
OUT = REPO / "build" / "test-vmlab"
DOMAINS = [f"{LAB_NAME}-coreos{i}" for i in (1, 2, 3)]
INV_TIMEOUT = 2400  # emulated VMs: a docker command takes 10-20 s in a guest
TIMES: dict[str, float] = {}


def _spec(default_lab: dict[str, Any]) -> dict[str, Any]:
    data = yaml.safe_load(yaml.safe_dump(default_lab))
    data["name"] = LAB_NAME
    data["network"] = {"subnet": f"{SUBNET}.0/24"}
    for i, node in enumerate(data["nodes"], start=1):
        node.update(ip=f"{SUBNET}.{10 + i}", memory=1024, cpus=1)
    return data


def _run(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def _inv(spec_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "invoke", *args, "--spec", str(spec_file), "--out", str(OUT)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=INV_TIMEOUT,
    )
    key = " ".join(a for a in args[:2] if not a.startswith("-"))
    TIMES[f"{key} #{sum(k.startswith(key) for k in TIMES) + 1}"] = round(
        time.monotonic() - started, 1
    )
    # the engine's own timings (phases, checkpoints, restores), for the record under -s
    for line in result.stdout.splitlines():
        if any(word in line for word in (" passed in ", " taken in ", "restored ")):
            print(f"  [{key}] {line.strip()}")
    return result


def _tail(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout[-4000:] + "\n--- stderr ---\n" + result.stderr[-3000:]


def _virsh(*args: str) -> str:
    result = _run("virsh", "-c", "qemu:///system", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _lab_processes() -> list[str]:
    """Command lines of QEMU, ganesha or dnsmasq processes that belong to this lab."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(domain in cmdline for domain in DOMAINS) or str(OUT) in cmdline:
            found.append(f"{proc.name}: {cmdline[:160]}")
    return found


@pytest.fixture(scope="module")
def vm_lab(default_lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    for tool in ("vagrant", "virsh", "qemu-system-x86_64", "ganesha.nfsd", "iptables-save"):
        assert _run("which", tool).returncode == 0, f"{tool} is missing: run ./setup.sh"
    ensure_libvirt()  # this module may run alone, on a host where nothing started libvirtd
    spec_file = tmp_path_factory.mktemp("vmlab") / "lab.yaml"
    spec_file.write_text(yaml.safe_dump(_spec(default_lab), sort_keys=False))
    if OUT.exists():  # a previous run killed before its teardown
        _inv(spec_file, "lab.destroy", "--provider", "libvirt")
    try:
        yield spec_file
    finally:
        done = _inv(spec_file, "lab.destroy", "--provider", "libvirt")
        print(f"\nlibvirt lab times (s): {json.dumps(TIMES)}")
        assert done.returncode == 0, _tail(done)


def test_vms_up_to_labels_replay_from_a_snapshot_then_nothing_left(vm_lab: Path) -> None:
    networks_before = set(_virsh("net-list", "--all", "--name").split())

    up = _inv(vm_lab, "lab.up", "--provider", "libvirt", "--until", "labels")
    assert up.returncode == 0, _tail(up)
    state = json.loads((OUT / "state.json").read_text())
    assert state["provider"] == "libvirt"
    for phase in ("swarm", "labels"):
        assert state["phases"][phase]["status"] == "passed"
        assert state["phases"][phase]["checkpoint"] == f"after-{phase}"
    assert "minio" not in state["phases"]  # --until labels stopped there
    running = set(_virsh("list", "--state-running", "--name").split())
    assert set(DOMAINS) <= running
    for domain in DOMAINS:
        snapshots = _virsh("snapshot-list", domain, "--name").split()
        assert {"after-swarm", "after-labels"} <= set(snapshots)

    replay = _inv(vm_lab, "phase", "labels")
    assert replay.returncode == 0, _tail(replay)
    assert "restoring checkpoint after-swarm" in replay.stdout
    assert "FAIL" not in replay.stdout
    state = json.loads((OUT / "state.json").read_text())
    assert state["phases"]["labels"]["status"] == "passed"

    for attempt in ("first", "second"):  # safe to run twice
        gone = _inv(vm_lab, "lab.destroy", "--provider", "libvirt")
        assert gone.returncode == 0, f"{attempt} destroy: {_tail(gone)}"
    leftovers = {
        "domains": [d for d in _virsh("list", "--all", "--name").split() if d in DOMAINS],
        "volumes": [
            v for v in pool_volumes(_virsh("vol-list", "default")) if v.startswith(f"{LAB_NAME}-")
        ],  # fmt: skip
        "networks": sorted(set(_virsh("net-list", "--all", "--name").split()) - networks_before),
        "iptables": [
            line
            for line in _run("iptables-save").stdout.splitlines()
            if BRIDGE in line or f"{SUBNET}." in line
        ],  # fmt: skip
        "bridge": _run("ip", "link", "show", BRIDGE).returncode == 0,
        "processes": _lab_processes(),
    }
    assert leftovers == {
        "domains": [], "volumes": [], "networks": [], "iptables": [],
        "bridge": False, "processes": [],
    }  # fmt: skip
    assert not (OUT / "state.json").exists()
