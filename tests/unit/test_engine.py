"""The engine's bookkeeping, with a recording shell in place of SSH.

The phases themselves are proven against real nodes in test_lab_local.py;
here: resume after the last passing phase, stale marks after a replay,
failure messages, idempotence guards and dry-run output that hides secrets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lab.engine import Engine, PhaseFailed
from lab.nodes import Capabilities
from lab.phases.context import PhaseContext
from lab.remote import CommandResult
from lab.render import render
from lab.spec import parse_spec
from lab.state import LabState


class RecordingShell:
    """Answers every command with exit 0 unless told otherwise; records what ran."""

    def __init__(self, answers: dict[str, tuple[int, str]] | None = None):
        self.answers = answers or {}
        self.ran: list[tuple[str, str]] = []
        self.uploads: list[tuple[str, str, int]] = []

    def run(self, node: str, command: str, *, timeout: float, echo: bool) -> CommandResult:
        self.ran.append((node, command))
        code, out = next(
            (answer for fragment, answer in self.answers.items() if fragment in command),
            (0, ""),
        )
        return CommandResult(node, command, code, out, "boom\n" if code else "", 0.01)

    def upload(self, node: str, local: Path, remote: str, mode: int) -> None:
        self.uploads.append((node, remote, mode))

    def user(self, node: str) -> str:
        return "core"


class SnapshotLog:
    name = "fake"
    capabilities = Capabilities()

    def __init__(self) -> None:
        self.saved: list[str] = []
        self.restored: list[str] = []

    def snapshot_save(self, name: str) -> None:
        self.saved.append(name)

    def snapshot_restore(self, name: str) -> None:
        self.restored.append(name)

    def snapshot_list(self) -> list[str]:
        return list(dict.fromkeys(["after-nodes", *self.saved]))

    def snapshot_delete(self, name: str) -> None:
        self.saved.remove(name)


@pytest.fixture
def ctx(lab_data: dict[str, Any], tmp_path: Path) -> PhaseContext:
    spec = parse_spec(lab_data)
    result = render(spec, tmp_path / "build")
    return PhaseContext(spec, result.build, Capabilities(), result.secrets, "traefik")


def test_labels_phase_checkpoints_and_records_progress(ctx: PhaseContext) -> None:
    # Guards say "not labelled yet" (exit 1); the checks then see the labels.
    shell = RecordingShell({"grep -qx true": (1, ""), "index .Spec.Labels": (0, "true")})
    provider = SnapshotLog()
    Engine(ctx, provider, shell).run_phase("labels")
    assert provider.saved == ["after-labels"]
    state = LabState.load(ctx.build)
    assert state.passed("labels")
    updates = [c for _, c in shell.ran if c.startswith("docker node update")]
    assert "docker node update --label-add minio4=true coreos1" in updates


def test_guarded_steps_are_skipped_the_second_time(ctx: PhaseContext) -> None:
    # Guards answer 0 ("already done"): nothing but guards and checks may run.
    shell = RecordingShell({"index .Spec.Labels": (0, "true")})
    Engine(ctx, SnapshotLog(), shell).run_phase("labels", checkpoint=False)
    assert not [c for _, c in shell.ran if c.startswith("docker node update")]


def test_a_failing_step_names_node_command_exit_code_and_stderr(ctx: PhaseContext) -> None:
    shell = RecordingShell({"docker network inspect": (1, ""), "network create": (3, "")})
    with pytest.raises(PhaseFailed) as failure:
        Engine(ctx, SnapshotLog(), shell).run_phase("swarm")
    message = str(failure.value)
    assert "node: coreos1  exit code: 3" in message
    network = (
        "docker network create --driver overlay --subnet 10.20.1.0/24 --opt encrypted services"
    )
    assert network in message
    assert "| boom" in message and "hint:" in message


def test_failed_checks_are_recorded_and_up_resumes_after_last_pass(ctx: PhaseContext) -> None:
    provider = SnapshotLog()
    passing = RecordingShell({"index .Spec.Labels": (0, "true")})
    engine = Engine(ctx, provider, passing)
    engine.state.phases.clear()
    engine.run_phase("labels")
    later = Engine(ctx, provider, RecordingShell({"index .Spec.Labels": (0, "true")}))
    ran = later.up(("labels",))
    assert ran == {}, "a passed phase is not run again"


def test_replay_marks_later_phases_stale(ctx: PhaseContext) -> None:
    provider = SnapshotLog()
    shell = RecordingShell({"index .Spec.Labels": (0, "true")})
    engine = Engine(ctx, provider, shell)
    engine.run_phase("labels")
    engine.state.phases["minio"] = engine.state.phases["labels"]
    provider.saved.append("after-swarm")
    engine.replay("labels")
    assert provider.restored == ["after-swarm"]
    assert LabState.load(ctx.build).phases["minio"].stale


def test_replay_without_its_checkpoint_lists_what_exists(ctx: PhaseContext) -> None:
    with pytest.raises(LookupError) as missing:
        Engine(ctx, SnapshotLog(), RecordingShell()).replay("redis")
    assert "after-bucket" in str(missing.value) and "after-nodes" in str(missing.value)


def test_dry_run_shows_commands_per_node_and_no_secret(ctx: PhaseContext) -> None:
    lines = Engine(ctx, SnapshotLog(), RecordingShell()).dry_run("minio")
    text = "\n".join(lines)
    assert "coreos1: docker secret create access_key - < minio_access_key" in text
    assert "docker stack deploy" in text
    for secret in (ctx.secrets.minio_access_key, ctx.secrets.minio_secret_key):
        assert secret not in text
    registry = "\n".join(Engine(ctx, SnapshotLog(), RecordingShell()).dry_run("registry"))
    assert ctx.secrets.registry_http_secret not in registry
    assert "coreos3: upload coreos3.yml" in registry


def test_up_until_stops_after_that_phase(ctx: PhaseContext) -> None:
    shell = RecordingShell({"index .Spec.Labels": (0, "true")})
    engine = Engine(ctx, SnapshotLog(), shell)
    engine.state.phases.clear()
    ran = engine.up(("labels", "minio"), until="labels")
    assert list(ran) == ["labels"]
    with pytest.raises(LookupError, match="no phase 'nope'"):
        engine.up(until="nope")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The engine's clock, advanced only by its sleeps: waits cost no real time."""
    now = [0.0]
    monkeypatch.setattr("lab.engine.time.monotonic", lambda: now[0])
    monkeypatch.setattr(
        "lab.engine.time.sleep", lambda seconds: now.__setitem__(0, now[0] + seconds)
    )
    return now


def test_after_a_failed_check_the_others_are_probed_once(
    ctx: PhaseContext, clock: list[float]
) -> None:
    # A trainee who removed the minio stack: nothing answers. Only the first failing
    # check waits out its settle time; the rest report at once (a fake clock).
    shell = RecordingShell()
    results = Engine(ctx, SnapshotLog(), shell).check_only("minio")
    assert results and not any(r.passed for r in results)
    probes = [command for _, command in shell.ran]
    first, *others = [r.check.command for r in results]
    assert probes.count(first) > 1, "the first failing check settles"
    assert all(probes.count(command) == 1 for command in others if command != first)
    assert clock[0] <= results[0].check.settle_for + 1


def test_waits_and_timeouts_scale_with_the_nodes_pace(
    ctx: PhaseContext, clock: list[float]
) -> None:
    # Emulated VMs (pace 4): a check settles four times as long before it fails, and
    # every SSH command gets four times the timeout.
    timeouts: list[float] = []

    class TimedShell(RecordingShell):
        def run(self, node: str, command: str, *, timeout: float, echo: bool) -> CommandResult:
            timeouts.append(timeout)
            return super().run(node, command, timeout=timeout, echo=echo)

    slow = PhaseContext(ctx.spec, ctx.build, Capabilities(pace=4.0), ctx.secrets, "traefik")
    results = Engine(slow, SnapshotLog(), TimedShell()).check_only("minio")
    first = results[0].check
    assert 4 * first.settle_for <= clock[0] <= 4 * first.settle_for + 2
    assert timeouts and all(t == 4 * first.timeout for t in timeouts)
