"""Helpers for tests and benchmarks of the local provider (imported, not collected)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from lab.host.mounts import mountinfo
from lab.providers.local import CGROUP_PREFIX, LocalProvider
from lab.remote import Remote

TEST_LAB_NAME = "hrl-test"
TEST_SUBNET = "10.213.7"  # never the default lab's 172.17.8.0/24


def local_lab_data(name: str = TEST_LAB_NAME, subnet: str = TEST_SUBNET) -> dict[str, Any]:
    """A three-node lab of its own name and subnet, so tests never meet a user's lab."""
    nodes = [{"name": f"coreos{i}", "ip": f"{subnet}.{10 + i}"} for i in (1, 2, 3)]
    return {
        "name": name,
        "network": {"subnet": f"{subnet}.0/24"},
        "nodes": nodes,
        "minio": {
            "instances": [
                {
                    "name": f"minio{i}",
                    "node": f"coreos{(i - 1) % 3 + 1}",
                    "port": 9000 + i,
                    "data": f"/mnt/docker_reg/minio/f{i}",
                }
                for i in (1, 2, 3, 4)
            ]  # fmt: skip
        },
    }


def write_lab(directory: Path, data: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "lab.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def form_swarm(remote: Remote, provider: LocalProvider) -> None:
    """What the engine's swarm phase does: init on the first node, join the others as managers."""
    first, *others = provider.nodes()
    remote.run(
        first.name,
        f"docker swarm init --advertise-addr {first.address} --dispatcher-heartbeat 1s",
        stream=False,
        check=True,
    )
    token = remote.run(first.name, "docker swarm join-token -q manager", stream=False, check=True)
    remote.run_all(
        lambda n: (
            f"docker swarm join --token {token.stdout.strip()} --advertise-addr "
            f"{n.address} {first.address}:2377"
        ),
        nodes=[n.name for n in others],
        stream=False,
        check=True,
    )
    wait_for("three Ready managers", lambda: manager_count(remote, first.name) == 3, 60)


def manager_count(remote: Remote, node: str) -> int:
    """Managers that are Ready and Leader/Reachable, as seen from ``node``."""
    result = remote.run(
        node,
        "docker node ls --format '{{.Status}} {{.ManagerStatus}}'",
        stream=False,
        timeout=20,
    )
    if not result.ok:
        return -1
    lines = result.stdout.split("\n")
    return sum(1 for line in lines if line.startswith("Ready") and ("Leader" in line or
               "Reachable" in line))  # fmt: skip


def leftovers(provider: LocalProvider) -> list[str]:
    """Everything of the lab still on the host: must be empty after destroy."""
    found: list[str] = []
    lab = provider.spec.name
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"netns {line.split()[0]}" for line in netns.splitlines() if f"hrl-{lab}-" in line]
    roots = (str(provider.run_dir), str(provider.state_dir))
    found += [f"mount {p}" for p, _ in mountinfo() if p.startswith(roots)]
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(root in cmdline for root in roots) and pid != os.getpid():
            found.append(f"process {pid}: {cmdline[:120]}")
    for cgroup_root in Path("/sys/fs/cgroup").iterdir():
        if (cgroup_root / CGROUP_PREFIX / lab).exists():
            found.append(f"cgroup {cgroup_root / CGROUP_PREFIX / lab}")
    link = subprocess.run(["ip", "link", "show", provider.bridge], capture_output=True)
    if link.returncode == 0:
        found.append(f"bridge {provider.bridge}")
    rules = subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True).stdout
    found += [f"rule {r}" for r in rules.splitlines() if provider.bridge in r]
    if provider.run_dir.exists():
        found.append(f"dir {provider.run_dir}")
    return found
