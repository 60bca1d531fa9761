"""The front door survives its load balancer: labs/ha-front-door.yaml on the local provider.

One lab of its own name and subnet is brought up through the traefik phase for the
module and destroyed at the end, also when a test fails. Then the load balancer on
the node holding the virtual IP is stopped, and the host measures, with a bounded
loop of GETs on the VIP, how long the front address stays without an answer.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.drills.load import Access, Registry
from lab.phases.traefik import CONTAINER
from lab.secrets import PUSH_USER
from tests.helpers import REPO, run_inv

LAB_NAME = "hrl-vip"
SUBNET = "10.213.31"
VIP = f"{SUBNET}.100"
PORT = 80
FRONT = f"{VIP}:{PORT}"
# The lab's registry is HTTPS with accounts (registry.tls): the probes log in as the
# push account and trust only the lab CA, as the drills do. Set when the lab is up.
ACCESS: list[Access] = []
PROBE_EVERY = 0.1  # seconds between GETs
PROBE_TIMEOUT = 1.0  # seconds a GET may take
FAILOVER_PROMISE = 5.0  # seconds the front address may stay without an answer


def _vip_lab() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "labs" / "ha-front-door.yaml").read_text())
    data["name"] = LAB_NAME
    data["network"] = {"subnet": f"{SUBNET}.0/24"}
    for i, node in enumerate(data["nodes"], start=1):
        node["ip"] = f"{SUBNET}.{10 + i}"
    data["loadbalancer"]["vip"] = VIP
    return data


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("vip")
    spec_file = root / "lab.yaml"
    spec_file.write_text(yaml.safe_dump(_vip_lab(), sort_keys=False))
    out = root / "build"
    try:
        yield spec_file, out
    finally:
        done = run_inv(
            "lab.destroy", "--spec", str(spec_file), "--out", str(out), "--provider", "local"
        )
        assert done.returncode == 0, done.stderr[-2000:]


def _tail(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout[-4000:] + "\n--- stderr ---\n" + result.stderr[-3000:]


@pytest.fixture(scope="module")
def lab_up(lab: tuple[Path, Path]) -> subprocess.CompletedProcess[str]:
    spec_file, out = lab
    result = run_inv(
        "lab.up", "--provider", "local", "--until", "traefik",
        "--spec", str(spec_file), "--out", str(out), timeout=1800,
    )  # fmt: skip
    assert result.returncode == 0, _tail(result)
    secrets = out / "secrets"
    password = (secrets / "registry_push_password").read_text().strip()
    ACCESS[:] = [Access(secrets / "ca.crt", PUSH_USER, password)]
    return result


@pytest.fixture(scope="module")
def docker(lab: tuple[Path, Path], lab_up: subprocess.CompletedProcess[str]):
    """``docker(node, *args)``: the docker client on a node, over the lab's SSH."""
    from lab.remote import Remote, known_hosts_file
    from lab.workflow import open_lab

    opened = open_lab(str(lab[0]), str(lab[1]), "local")
    with Remote(opened.provider.nodes(), known_hosts_file(lab[1]), printer=None) as remote:

        def run(node: str, command: str) -> str:
            result = remote.run(node, command, stream=False, timeout=60)
            assert result.exit_code == 0, f"{node}: {command}: {result.stderr}"
            return result.stdout

        yield run


def _holders(run: Callable[[str, str], str]) -> list[str]:
    return [n for n in ("coreos1", "coreos2") if run(n, f"ip -o addr show to {VIP}").strip()]


@dataclass(frozen=True)
class Probe:
    at: float  # time.monotonic() when the GET started
    ok: bool


def _front_answers() -> bool:
    """GET /v2/ at the front address over HTTPS, logged in: 200 means a registry behind
    the load balancer answered."""
    return Registry(FRONT, timeout=PROBE_TIMEOUT, access=ACCESS[0]).answers()


def probe_front(seconds: float) -> list[Probe]:
    """GET the front address every PROBE_EVERY for ``seconds``: at most seconds/0.1 GETs."""
    probes: list[Probe] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        probes.append(Probe(started, _front_answers()))
        time.sleep(max(0.0, PROBE_EVERY - (time.monotonic() - started)))
    return probes


def outage(probes: list[Probe]) -> tuple[float, float | None]:
    """(seconds from the first failed GET to the next good one, when the first failed
    relative to the first probe); (0, None) if none failed."""
    failed = [i for i, p in enumerate(probes) if not p.ok]
    if not failed:
        return 0.0, None
    back = next((p for p in probes[failed[-1] :] if p.ok), None)
    assert back is not None, "the front address never answered again"
    first = probes[failed[0]]
    return back.at - first.at, first.at - probes[0].at


def test_up_runs_keepalived_and_exactly_one_node_holds_the_vip(
    lab: tuple[Path, Path], lab_up: subprocess.CompletedProcess[str], docker
) -> None:
    out = lab_up.stdout
    assert "run haproxy on coreos1, coreos2" in out
    assert f"run keepalived on coreos1, coreos2 for the front address {VIP}:{PORT}" in out
    assert "exactly one of coreos1, coreos2 holds" in out and "FAIL" not in out
    state = json.loads((lab[1] / "state.json").read_text())
    assert state["phases"]["traefik"]["status"] == "passed"
    assert len(_holders(docker)) == 1
    assert _front_answers()


def test_stopping_the_holders_lb_moves_the_vip_within_5s_and_it_stays(docker) -> None:
    (holder,) = _holders(docker)
    other = "coreos2" if holder == "coreos1" else "coreos1"
    with ThreadPoolExecutor(max_workers=1) as pool:
        watching = pool.submit(probe_front, 15.0)
        time.sleep(2.0)  # the front answers before the fault
        stopped_at = time.monotonic()
        docker(holder, f"docker stop {CONTAINER}")
        probes = watching.result()
    failover, first_failure = outage(probes)
    start = probes[0].at
    report = {
        "stop issued (s)": round(stopped_at - start, 2),
        "first failed GET (s)": None if first_failure is None else round(first_failure, 2),
        "without an answer (s)": round(failover, 2),
        "failed GETs": sum(not p.ok for p in probes),
        "GETs": len(probes),
    }
    print(f"\nfailover {holder} -> {other}: {report}")
    assert failover <= FAILOVER_PROMISE, report
    assert _holders(docker) == [other]
    good_before = [p for p in probes if p.at < stopped_at]
    assert good_before and all(p.ok for p in good_before), "the front failed before the fault"

    # The old holder's load balancer comes back: with nopreempt the address stays put.
    docker(holder, f"docker start {CONTAINER}")
    after = probe_front(8.0)
    assert all(p.ok for p in after), f"{sum(not p.ok for p in after)} GETs failed after heal"
    assert _holders(docker) == [other]


def test_the_lb_drill_shows_the_front_door_surviving_its_load_balancer(
    lab: tuple[Path, Path], lab_up: subprocess.CompletedProcess[str]
) -> None:
    """inv lab.drill lb on the VIP lab: the promises about time hold, nothing is lost."""
    spec_file, out = lab
    report = out / "lb-report.json"
    result = run_inv("lab.drill", "lb", "--seconds", "12", "--json", str(report),
                     "--spec", str(spec_file), "--out", str(out), timeout=900)  # fmt: skip
    assert report.exists(), _tail(result)
    (verdict,) = json.loads(report.read_text())
    broken = [p["promise"] for p in verdict["promises"] if not p["kept"]]
    assert broken == [] and result.returncode == 0, _tail(result)
    assert "no 5 s pass without a successful request" in [p["promise"] for p in verdict["promises"]]
    assert verdict["numbers"]["lost"] == []
    assert verdict["lessons"] == []  # no single point of failure to teach here
