"""The drill machinery without a lab: the registry client and load against a real
Debian docker-registry on 127.0.0.1, the numbers, the promises and the picture."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.drills.faults import default_node, layout_lessons, lb_drill, node_drill
from lab.drills.load import Load, LoadPlan, Outcome, Registry, RegistryFailure, make_image
from lab.drills.plot import timeline
from lab.drills.report import Window, judge, longest_gap, numbers
from lab.spec import load_spec
from tests.helpers import REPO

REGISTRY_BINARY = "/usr/bin/docker-registry"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_registry(tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    assert os.access(REGISTRY_BINARY, os.X_OK), "docker-registry is missing: run ./setup.sh"
    config = tmp_path / "registry.yml"
    config.write_text(json.dumps({
        "version": 0.1, "log": {"level": "error"},
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "store")}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }))  # fmt: skip
    proc = subprocess.Popen([REGISTRY_BINARY, "serve", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    registry = Registry(f"127.0.0.1:{port}", timeout=1)
    deadline = time.monotonic() + 15
    while not registry.answers():
        assert proc.poll() is None and time.monotonic() < deadline, "registry did not start"
        time.sleep(0.1)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[tuple[Registry, subprocess.Popen[bytes], Path, int]]:
    port = _free_port()
    proc = _start_registry(tmp_path, port)
    try:
        yield Registry(f"127.0.0.1:{port}"), proc, tmp_path, port
    finally:
        _stop(proc)


def test_a_pushed_image_pulls_back_with_the_acknowledged_digest(registry) -> None:
    client = registry[0]
    image = make_image("one")
    digest = client.push("lab/drill", "one", image)
    assert digest == image.digest
    assert client.pull("lab/drill", "one") == digest
    assert make_image("one").digest != image.digest  # every image is new
    with pytest.raises(RegistryFailure, match="get manifest: HTTP 404"):
        client.pull("lab/drill", "missing")


def test_load_records_every_request_and_the_failures_while_the_registry_is_down(
    registry,
) -> None:
    client, proc, tmp_path, port = registry
    load = Load(client, LoadPlan(pulls_per_second=20, pushes_per_second=5, seed_images=2))
    load.seed()
    load.start(max_seconds=30)
    time.sleep(1.5)
    _stop(proc)
    fault = load.now()
    time.sleep(1.0)
    restarted = _start_registry(tmp_path, port)
    heal = load.now()
    try:
        time.sleep(1.5)
        outcomes = load.stop()
    finally:
        _stop(restarted)
    found = numbers(outcomes, Window(fault, heal, outcomes[-1].end))
    assert found.pulls >= 60 and found.pushes >= 15
    assert 0 < found.failed_pulls < found.pulls
    assert found.recovery_after_heal is not None and found.recovery_after_heal < 1.5
    assert found.longest_gap >= 0.9
    acknowledged = [o for o in outcomes if o.kind == "push" and o.ok]
    assert acknowledged and all(o.digest.startswith("sha256:") for o in acknowledged)


def _outcome(kind: str, start: float, ok: bool) -> Outcome:
    return Outcome(kind, start, start + 0.1, ok)


def test_numbers_of_a_drill() -> None:
    outcomes = [_outcome("pull", t / 2, not 10 <= t < 16) for t in range(40)]
    outcomes += [_outcome("push", t, t != 6) for t in range(20)]
    found = numbers(outcomes, Window(fault=5.0, heal=12.0, end=20.0))
    assert (found.pulls, found.failed_pulls, found.pushes, found.failed_pushes) == (40, 6, 20, 1)
    assert found.first_failure_after_fault == pytest.approx(0.1)
    assert found.recovery_after_fault == pytest.approx(2.6)  # the last failure ended at 7.6
    assert found.recovery_after_heal == 0.0
    # successes end at 4.6 (pull), 5.1 and 7.1 (pushes), 8.1 (pull): the widest gap is 2 s
    assert longest_gap(outcomes, 20.0) == pytest.approx(2.0)
    verdict = judge("registry", "stop it", [], [], found, Window(5.0, 12.0, 20.0))
    assert verdict.broken == []
    found.lost.append("lab/drill:x from 10.0.0.1:5000")
    assert judge("registry", "stop it", [], [], found, Window(5, 12, 20)).broken


def test_a_fault_that_lasts_until_healed_never_recovered() -> None:
    outcomes = [_outcome("pull", t, t < 5) for t in range(10)]
    found = numbers(outcomes, Window(fault=5.0, heal=10.0, end=10.0))
    assert found.recovery_after_fault is None


def test_the_tutorial_layout_names_its_single_points_of_failure() -> None:
    spec = load_spec(REPO / "lab.yaml")
    lessons = " ".join(layout_lessons(spec))
    assert "load balancer runs only on coreos1" in lessons
    assert "coreos1 holds 2 of MinIO's 4 drives: writes need 3" in lessons
    assert default_node(spec) == "coreos3"


class _NoLab:
    """A stand-in for DrillLab: planning a drill touches no node."""

    def __init__(self) -> None:
        self.spec = load_spec(REPO / "lab.yaml")
        self.provider = None


def test_power_drills_promise_only_what_the_layout_can_keep() -> None:
    lab = _NoLab()
    survivable = node_drill(lab, "coreos3")  # type: ignore[arg-type]
    assert [p.text for p in survivable.promises] == [
        "the swarm keeps a leader (quorum of managers)",
        "at most 5% of pulls fail",
        "requests succeed again within 15 s of the fault",
    ]
    first = node_drill(lab, "coreos1")  # type: ignore[arg-type]
    assert [p.text for p in first.promises] == ["the swarm keeps a leader (quorum of managers)"]
    assert any("only load balancer" in lesson for lesson in first.lessons)
    assert any("writes need 3" in lesson for lesson in first.lessons)
    single_lb = lb_drill(lab, None)  # type: ignore[arg-type]
    assert single_lb.promises == [] and "single" in single_lb.lessons[0]


def test_the_timeline_is_a_picture(tmp_path: Path) -> None:
    outcomes = [_outcome("pull", t / 4, not 20 <= t < 30) for t in range(80)]
    outcomes += [_outcome("push", t, t != 6) for t in range(20)]
    window = Window(5.0, 10.0, 20.0)
    verdict = judge("registry", "stop the registry on coreos3", [], [],
                    numbers(outcomes, window), window)  # fmt: skip
    png = timeline(outcomes, verdict, tmp_path / "registry.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_behind_a_vip_the_lb_drill_promises_a_short_gap_and_teaches_no_lesson() -> None:
    lab = _NoLab()
    lab.spec = load_spec(REPO / "labs" / "ha-front-door.yaml")
    target = lb_drill(lab, "coreos2")  # type: ignore[arg-type]
    assert [p.text for p in target.promises] == [
        "the swarm keeps a leader (quorum of managers)",
        "no 5 s pass without a successful request",
        "requests succeed again within 5 s of the fault",
    ]
    assert not any("only load balancer" in lesson for lesson in layout_lessons(lab.spec))


def test_ctrl_c_during_a_fault_heals_it_and_clears_the_note(tmp_path: Path, monkeypatch) -> None:
    """KeyboardInterrupt while the fault is in force: heal runs, the in-force note goes."""
    from lab.drills import runner as runner_module
    from lab.drills.faults import DrillTarget
    from lab.drills.runner import DrillRun

    events: list[str] = []
    target = DrillTarget(
        "registry", "coreos3", "stop the registry on coreos3",
        inject=lambda: events.append("inject"), heal=lambda: events.append("heal"),
        heal_hint="docker start registry",
    )  # fmt: skip
    note = tmp_path / "drills" / "in-force.json"
    run = DrillRun(_NoLab(), "10.0.0.1:80", [], note, say=events.append)  # type: ignore[arg-type]

    def interrupted_sleep(seconds: float) -> None:
        if "inject" in events:  # the user presses Ctrl-C while the fault is in force
            assert note.exists()
            raise KeyboardInterrupt

    class Clock:
        def now(self) -> float:
            return 0.0

    class Watch:
        down: str | None = None

    monkeypatch.setattr(runner_module.time, "sleep", interrupted_sleep)
    with pytest.raises(KeyboardInterrupt):
        run._fault(target, Clock(), Watch(), 10)  # type: ignore[arg-type]
    assert [e for e in events if e in ("inject", "heal")] == ["inject", "heal"]
    assert not note.exists()


def test_failures_caused_by_the_heal_count_after_the_heal_not_against_the_fault() -> None:
    """A node that comes back is in rotation before its storage: those failures end
    after the heal and show in recovery_after_heal, not in recovery_after_fault."""
    outcomes = [_outcome("pull", t / 2, True) for t in range(60)]
    outcomes += [Outcome("push", 16.5, 24.5, False), Outcome("push", 20.0, 21.0, False)]
    outcomes += [Outcome("push", 25.0, 25.2, True)]
    found = numbers(outcomes, Window(fault=5.0, heal=17.0, end=30.0))
    assert found.recovery_after_fault == 0.0
    assert found.recovery_after_heal == pytest.approx(7.5)


def test_without_write_quorum_a_power_drill_promises_only_that_pulls_recover() -> None:
    lab = _NoLab()
    lab.spec = load_spec(REPO / "labs" / "ha-front-door.yaml")
    first = node_drill(lab, "coreos1")  # type: ignore[arg-type]
    assert "pulls succeed again within 15 s of the fault" in [p.text for p in first.promises]
    assert any("writes need 3" in lesson for lesson in first.lessons)
    outcomes = [_outcome("pull", t / 2, True) for t in range(40)]
    outcomes += [_outcome("push", t, t < 5) for t in range(20)]  # pushes fail from the fault on
    found = numbers(outcomes, Window(fault=5.0, heal=15.0, end=20.0))
    assert found.recovery_after_fault is None and found.pull_recovery_after_fault == 0.0
    assert all(p.kept(found) for p in first.promises)
