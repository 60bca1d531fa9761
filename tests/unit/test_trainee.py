"""The trainee's loop offline: lab.ssh's argv, --explain, --reset and grading.

A recording shell stands in for SSH (as in test_engine.py); the live loop is in
tests/system/test_trainee_local.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.cli import remainder_argv
from lab.engine import Engine
from lab.errors import UnknownName
from lab.nodes import Capabilities, NodeAccess
from lab.phases import PHASES
from lab.phases.context import PhaseContext
from lab.render import render
from lab.secrets import ensure_secrets
from lab.spec import parse_spec
from lab.ssh import pick_node, ssh_argv
from lab.state import RESET, TRAINEE, LabState
from lab.trainee import explain_lines, guide
from tests.unit.test_engine import RecordingShell, SnapshotLog

NODE = NodeAccess("coreos1", "10.213.21.11", "root", Path("/b/secrets/ssh_key"))
PLUMBING = ("install -D", ".ha-registry-lab", "org.ha-registry-lab", "{join_token}", "{sudo}")


def make_ctx(lab_data: dict[str, Any], build: Path, caps: Capabilities) -> PhaseContext:
    spec = parse_spec(lab_data)
    result = render(spec, build, caps)
    return PhaseContext(spec, result.build, caps, result.secrets, "haproxy")


@pytest.fixture(scope="module")
def rendered(default_lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One render for the module (a render takes seconds); each test gets its own copy."""
    return make_ctx(default_lab, tmp_path_factory.mktemp("trainee") / "build", Capabilities()).build


@pytest.fixture
def ctx(default_lab: dict[str, Any], rendered: Path, tmp_path: Path) -> PhaseContext:
    build = tmp_path / "build"
    shutil.copytree(rendered, build, symlinks=True)
    return PhaseContext(
        parse_spec(default_lab), build, Capabilities(), ensure_secrets(build), "haproxy"
    )


def test_ssh_argv_pins_the_lab_key_and_host_keys_and_keeps_words_apart() -> None:
    argv = ssh_argv(
        NODE, Path("/b/known_hosts"), ["docker", "service", "ls", "--format", "{{.Name}} x"]
    )
    assert argv[0] == "ssh"
    assert argv[1:3] == ["-i", "/b/secrets/ssh_key"]
    for option in ("UserKnownHostsFile=/b/known_hosts", "StrictHostKeyChecking=yes",
                   "IdentitiesOnly=yes", "PasswordAuthentication=no"):  # fmt: skip
        assert option in argv
    at = argv.index("root@10.213.21.11")
    assert argv[at + 1 :] == ["--", "docker", "service", "ls", "--format", "{{.Name}} x"]
    assert "-t" not in argv


def test_ssh_argv_for_a_shell_asks_for_a_terminal_and_names_the_port() -> None:
    node = NodeAccess("coreos2", "127.0.0.1", "vagrant", Path("/k"), port=2222)
    argv = ssh_argv(node, Path("/kh"), tty=True)
    assert argv[-2:] == ["-t", "vagrant@127.0.0.1"]
    assert argv[argv.index("-p") : argv.index("-p") + 2] == ["-p", "2222"]


def test_the_words_after_double_dash_come_from_argv_unjoined() -> None:
    argv = ["inv", "lab.ssh", "coreos1", "--", "sh", "-c", "echo a b"]
    assert remainder_argv("sh -c echo a b", argv) == ["sh", "-c", "echo a b"]
    assert remainder_argv("docker 'node ls'", ["inv"]) == ["docker", "node ls"]
    assert remainder_argv("", ["inv", "lab.ssh", "coreos1"]) == []


def test_an_unknown_node_names_the_lab_nodes() -> None:
    with pytest.raises(UnknownName, match="coreos1"):
        pick_node([NODE], "coreos9")


@pytest.mark.parametrize("name", PHASES)
def test_explain_shows_trainee_commands_and_checks_not_plumbing(
    ctx: PhaseContext, name: str
) -> None:
    g = guide(name, ctx)
    text = "\n".join(explain_lines(g))
    assert "done looks like" in text
    assert all(d.what in text for d in g.done)
    for cmd in g.commands:
        assert not any(p in cmd.command for p in PLUMBING), cmd.command


def test_the_tutorial_names_are_the_defaults(ctx: PhaseContext) -> None:
    minio = "\n".join(explain_lines(guide("minio", ctx)))
    assert "docker stack deploy -c ~/lab/docker-compose-secrets.yaml minio_stack" in minio
    swarm = "\n".join(explain_lines(guide("swarm", ctx)))
    assert (
        "docker network create --driver overlay --subnet 10.20.1.0/24 --opt encrypted services"
        in swarm
    )
    assert "--replicas 2 --name nginx --network services" in swarm
    assert "docker swarm leave --force" in swarm and "(read only)" in swarm
    bucket = "\n".join(explain_lines(guide("bucket", ctx)))
    assert "s3cmd mb s3://docker" in bucket and "s3cmd info s3://docker" in bucket
    registry = "\n".join(explain_lines(guide("registry", ctx)))
    assert "redis-cli -p 6379 monitor" in registry


def test_without_esp_the_network_is_not_encrypted_and_it_says_so(
    lab_data: dict[str, Any], tmp_path: Path
) -> None:
    local = make_ctx(lab_data, tmp_path / "b", Capabilities(ipvs=False, systemd=False, esp=False))
    text = "\n".join(explain_lines(guide("swarm", local)))
    assert "--subnet 10.20.1.0/24 services" in text
    assert "--opt encrypted" not in text.split("where the kit differs")[0].replace(
        "no --opt encrypted", ""
    )
    assert "no IPsec ESP" in text


def test_a_missing_stack_fails_at_once_with_one_line_and_a_hint_per_check(
    ctx: PhaseContext, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    now = [0.0]
    monkeypatch.setattr("lab.engine.time.monotonic", lambda: now[0])
    monkeypatch.setattr("lab.engine.time.sleep", lambda s: now.__setitem__(0, now[0] + s))
    # The node's own shell prints the marker when no service is there; curl sees nothing.
    shell = RecordingShell({"docker service ls --format": (0, "absent: no swarm service minio1")})
    results = Engine(ctx, SnapshotLog(), shell).check_only("minio")
    assert now[0] == 0.0, "nothing waited: the object is absent"
    assert not any(r.passed for r in results)
    out = capsys.readouterr().out
    fails = [ln for ln in out.splitlines() if ln.startswith("FAIL:")]
    hints = [ln for ln in out.splitlines() if ln.startswith("  hint (on ")]
    assert len(fails) == len(results) == len(hints)
    assert "FAIL: minio1 runs on coreos1: not there (no swarm service minio1)" in fails
    assert "on coreos1 on coreos1" not in out and "(asked on coreos1)" not in fails[0]
    assert "docker service ps --no-trunc minio_stack_minio1" in out


def test_reset_restores_runs_only_the_preparing_steps_and_hands_over(
    ctx: PhaseContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [0.0]  # the engine's clock, advanced only by its sleeps: settling costs no time
    monkeypatch.setattr("lab.engine.time.monotonic", lambda: now[0])
    monkeypatch.setattr("lab.engine.time.sleep", lambda s: now.__setitem__(0, now[0] + s))
    provider = SnapshotLog()
    provider.saved += ["after-labels", "after-minio"]
    shell = RecordingShell()
    engine = Engine(ctx, provider, shell)
    engine.state.phases.clear()
    engine.reset("minio")
    assert provider.restored == ["after-labels"]
    assert not [c for _, c in shell.ran if "docker stack deploy" in c or "secret create" in c]
    assert {remote for _, remote, _ in shell.uploads} == {
        "lab/docker-compose-secrets.yaml",
        "lab/access_key",
        "lab/secret_key",
    }
    assert all(mode == 0o600 for _, r, mode in shell.uploads if r.endswith("_key"))
    state = LabState.load(ctx.build)
    assert state.phases["minio"].status == RESET and not state.passed("minio")
    # The trainee's work graded: recorded as done by hand, with the time.
    graded = Engine(ctx, provider, RecordingShell({"docker service ps": (0, "coreos1 Running")}))
    graded.check_only("minio")
    record = LabState.load(ctx.build).phases["minio"]
    assert record.by == TRAINEE and record.status == "failed" and record.at
    assert record.failed_checks and "minio2 runs on coreos2" in record.failed_checks


def test_the_registry_check_accepts_any_pushed_image(ctx: PhaseContext) -> None:
    from lab.phases import registry

    digests = [c for c in registry.checks(ctx) if "same digest" in c.name]
    assert digests and all("/v2/_catalog" in c.command for c in digests)
    assert all("absent:" in c.command for c in digests)


def test_the_tasks_refuse_a_lab_that_is_not_up_and_mixed_flags(
    lab_data: dict[str, Any], tmp_path: Path
) -> None:
    from tests.helpers import run_inv

    spec = tmp_path / "lab.yaml"
    spec.write_text(yaml.safe_dump(lab_data))
    where = ("--spec", str(spec), "--out", str(tmp_path / "build"))
    ssh = run_inv("lab.ssh", "coreos1", *where, "--", "docker", "node", "ls")
    assert ssh.returncode == 2 and "is not up" in ssh.stderr, ssh.stderr
    mixed = run_inv("phase", "minio", "--reset", "--check", *where)
    assert mixed.returncode == 2 and "--reset and --check do not go together" in mixed.stderr
