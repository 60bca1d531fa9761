"""End to end on the local provider: the whole lab, real dockerds, real SSH.

One lab is brought up for the module (`inv lab.up --provider local`) and
torn down at the end, also when a test fails. The tests then replay phases
from their checkpoints, re-run them in place, and grade a broken lab.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.phases import PHASES
from tests.helpers import REPO, run_inv
from tests.system.secret_scan import leaks, secret_values

LAB_NAME = "e2e"
SUBNET = "10.231.7"


def _e2e_spec(default_lab: dict[str, Any]) -> dict[str, Any]:
    data = yaml.safe_load(yaml.safe_dump(default_lab))
    data["name"] = LAB_NAME
    data["network"] = {"subnet": f"{SUBNET}.0/24"}
    for i, node in enumerate(data["nodes"], start=1):
        node["ip"] = f"{SUBNET}.{10 + i}"
    return data


@pytest.fixture(scope="module")
def lab(
    default_lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("e2e")
    spec_file = root / "lab.yaml"
    spec_file.write_text(yaml.safe_dump(_e2e_spec(default_lab), sort_keys=False))
    out = root / "build"
    try:
        yield spec_file, out
    finally:
        done = run_inv(
            "lab.destroy", "--spec", str(spec_file), "--out", str(out), "--provider", "local"
        )
        assert done.returncode == 0, done.stderr[-2000:]


# Everything the kit printed in this module, by command: no secret may be in it.
PRINTED: dict[str, str] = {}


def _inv(lab: tuple[Path, Path], *args: str) -> subprocess.CompletedProcess[str]:
    spec_file, out = lab
    result = run_inv(*args, "--spec", str(spec_file), "--out", str(out))
    where = f"the output of inv {' '.join(args)}"
    PRINTED[where] = PRINTED.get(where, "") + result.stdout + result.stderr
    return result


def _tail(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout[-3000:] + "\n--- stderr ---\n" + result.stderr[-3000:]


@pytest.fixture(scope="module")
def lab_up(lab: tuple[Path, Path]) -> subprocess.CompletedProcess[str]:
    result = _inv(lab, "lab.up", "--provider", "local")
    assert result.returncode == 0, _tail(result)
    return result


def test_the_registry_is_https_with_accounts_and_refuses_an_anonymous_push(
    lab: tuple[Path, Path], lab_up: subprocess.CompletedProcess[str]
) -> None:
    """lab.yaml's default: verify pushed as the push account and pulled as the read-only
    one over HTTPS through the load balancer, and saw anonymous and read-only pushes
    refused; and from here, without an account, the registry answers 401."""
    import ssl
    import urllib.error
    import urllib.request

    out = lab_up.stdout
    for line in ("pulled through the load balancer as lab-read with the pushed digest",
                 "ok   a push without an account is refused",
                 "ok   a push as the read-only account lab-read is refused",
                 "ok   the lab CA verifies the certificate of"):  # fmt: skip
        assert line in out, line
    daemon = json.loads((lab[1] / "files/daemon.json").read_text())
    assert "insecure-registries" not in daemon
    context = ssl.create_default_context(cafile=str(lab[1] / "secrets/ca.crt"))
    front = f"https://{SUBNET}.11:80/v2/lab/anonymous/blobs/uploads/"
    request = urllib.request.Request(front, method="POST")
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open(request, timeout=30)
    assert refused.value.code == 401


def test_lab_up_builds_every_phase_and_verifies_push_pull(
    lab: tuple[Path, Path], lab_up: subprocess.CompletedProcess[str]
) -> None:
    state = json.loads((lab[1] / "state.json").read_text())
    assert state["provider"] == "local"
    assert [p for p in PHASES if state["phases"][p]["status"] == "passed"] == list(PHASES)
    assert all(state["phases"][p]["checkpoint"] == f"after-{p}" for p in PHASES)
    out = lab_up.stdout
    assert "no IPVS" in out
    assert "skipped: no systemd on local nodes" in out
    assert "run haproxy on coreos1" in out  # no Traefik image in the mirror: HAProxy stands in
    assert "FAIL" not in out
    assert f"lab {LAB_NAME} is up" in out


def test_phase_run_twice_in_place_changes_nothing_the_second_time(
    lab: tuple[Path, Path], lab_up: subprocess.CompletedProcess[str]
) -> None:
    first = _inv(lab, "phase", "bucket", "--no-restore")
    second = _inv(lab, "phase", "bucket", "--no-restore")
    assert first.returncode == 0 and second.returncode == 0, _tail(second)
    assert "bucket docker exists" in second.stdout and "created" not in second.stdout
    redis = _inv(lab, "phase", "redis", "--no-restore")
    assert redis.returncode == 0, _tail(redis)
    assert redis.stdout.count("already done") == 3  # one per node: nothing recreated


def test_check_grades_a_lab_where_the_minio_stack_was_removed(
    lab: tuple[Path, Path], lab_up: subprocess.CompletedProcess[str]
) -> None:
    from lab.remote import Remote, known_hosts_file
    from lab.workflow import open_lab

    opened = open_lab(str(lab[0]), str(lab[1]), "local")
    stack = opened.spec.minio.stack  # lab.yaml's: the tutorial's minio_stack
    with Remote(opened.provider.nodes(), known_hosts_file(lab[1]), printer=None) as remote:
        removed = remote.run("coreos1", f"docker stack rm {stack}", stream=False)
        assert removed.exit_code == 0, removed.stderr
        remote.run(
            "coreos1",
            "for i in $(seq 60); do docker service ls -q | grep -q . && sleep 1 || break; done",
            stream=False,
        )
    graded = _inv(lab, "phase", "minio", "--check")
    assert graded.returncode == 1, _tail(graded)
    fails = [ln for ln in graded.stdout.splitlines() if ln.startswith("FAIL:")]
    assert fails, _tail(graded)
    assert any(ln.startswith("FAIL: minio1 runs on coreos1: not there") for ln in fails)
    # The instructor's replay: roll back to the checkpoint before minio, run it again.
    replay = _inv(lab, "phase", "minio")
    assert replay.returncode == 0, _tail(replay)
    assert "restoring checkpoint after-labels on all nodes" in replay.stdout
    assert "phase minio passed" in replay.stdout
    state = json.loads((lab[1] / "state.json").read_text())
    assert state["phases"]["minio"]["status"] == "passed"
    assert state["phases"]["registry"]["stale"] is True  # later phases predate the replay


def test_a_replay_from_a_checkpoint_taken_while_minio_restarted_brings_minio_back(
    lab: tuple[Path, Path], lab_up: subprocess.CompletedProcess[str]
) -> None:
    """Replaying redis restores after-bucket and passes before MinIO's instances are back,
    so its checkpoint after-redis catches them restarting. Restoring that checkpoint
    used to leave host ports reserved for the dead tasks ("port is already allocated"):
    MinIO stayed down and replaying registry waited for it until it failed."""
    redis = _inv(lab, "phase", "redis")
    assert redis.returncode == 0, _tail(redis)
    registry = _inv(lab, "phase", "registry")
    assert registry.returncode == 0, _tail(registry)
    assert "restoring checkpoint after-redis on all nodes" in registry.stdout
    assert "phase registry passed" in registry.stdout


def test_no_secret_reaches_any_output(
    lab: tuple[Path, Path], lab_up: subprocess.CompletedProcess[str]
) -> None:
    """Everything the kit printed here (lab.up, the replays and grading above, every
    phase's --dry-run and --explain, lab.status) and wrote for people to read (the
    workbook, the run transcripts) holds none of the lab's secrets."""
    for phase in PHASES:
        for flag in ("--dry-run", "--explain"):
            shown = _inv(lab, "phase", phase, flag)
            assert shown.returncode == 0, _tail(shown)
    assert _inv(lab, "lab.status").returncode == 0
    handout_dir = lab[1].parent / "handout"
    for fmt in ("md", "html"):
        made = _inv(lab, "lab.handout", "--format", fmt, "--out-dir", str(handout_dir))
        assert made.returncode == 0, _tail(made)
    written = {
        f"{path.relative_to(lab[1].parent)}": path.read_text(errors="replace")
        for folder in (handout_dir, lab[1] / "transcripts")
        for path in folder.rglob("*")
        if path.is_file() and path.suffix in {".md", ".html", ".txt", ".log", ".json", ""}
    }
    secrets = secret_values(lab[1])
    assert {"minio_secret_key", "registry_push_password", "registry_read_password",
            "registry.key", "ca.key", "ssh_key"} <= set(secrets)  # fmt: skip
    assert "dry-run" in " ".join(PRINTED) and written, "nothing was captured"
    found = leaks(PRINTED | written, secrets)
    assert not found, "secrets reached output: " + "; ".join(found)


def test_destroy_leaves_no_namespace_bridge_or_process(lab: tuple[Path, Path]) -> None:
    result = _inv(lab, "lab.destroy", "--provider", "local")
    assert result.returncode == 0, _tail(result)
    again = _inv(lab, "lab.destroy", "--provider", "local")
    assert again.returncode == 0, "destroy must be safe to run twice"
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert LAB_NAME not in netns
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert LAB_NAME not in links
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(lab[1]) not in mounts
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(lab[1]) not in ps
    assert REPO.exists()
