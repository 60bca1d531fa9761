"""A class of three trainees on the local provider (issue 13): one bring-up for the module.

It proves that the labs are isolated from each other and from the host (a connection
attempt from a trainee's node after the trainee routes around), that a trainee's login
reaches only their own nodes, that the instructor can grade one and see the class,
that destroying one lab takes seconds and leaves the others passing `verify --check`,
and that destroying the class leaves nothing. Labs are `cls-1..3` in 10.215.0.0/20.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import REPO, run_inv

TEMPLATE = "cls"
POOL = "10.215.0.0/20"
SSH_PORT = 2215
CLASS_DIR = REPO / "build" / "classes" / TEMPLATE
PROBE = """
import socket, sys
s = socket.socket(); s.settimeout(4)
try:
    s.connect((sys.argv[1], int(sys.argv[2]))); print("open")
except OSError as exc:
    print("closed", exc)
"""


def _tail(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout[-4000:] + "\n--- stderr ---\n" + result.stderr[-3000:]


def _spec(trainee: str) -> Path:
    return CLASS_DIR / "labs" / f"{trainee}.yaml"


def _lab(trainee: str) -> dict[str, Any]:
    return yaml.safe_load(_spec(trainee).read_text())


def _on_node(trainee: str, *command: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "invoke", "lab.ssh", "coreos1", "--spec", str(_spec(trainee)),
            "--", *command]  # fmt: skip
    return subprocess.run(argv, cwd=REPO, input=stdin, capture_output=True, text=True, timeout=60)


def _probe(trainee: str, host: str, port: int) -> str:
    result = _on_node(trainee, "python3", "-", host, str(port), stdin=PROBE)
    assert result.returncode == 0, _tail(result)
    return result.stdout.strip()


def _status(template: Path) -> dict[str, Any]:
    result = run_inv("class.status", "--json", "--spec", str(template))
    assert result.returncode == 0, _tail(result)
    return json.loads(result.stdout)


def _leftovers() -> list[str]:
    """Anything of the class still on the host."""
    found: list[str] = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"netns {n}" for n in netns.split() if n.startswith(f"hrl-{TEMPLATE}-")]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found += [f"link {line.split(':')[1]}" for line in links.splitlines()
              if f"hrl-{TEMPLATE}-" in line or f" {TEMPLATE}-" in line]  # fmt: skip
    rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
    found += [f"rule {r}" for r in rules.splitlines() if f"{TEMPLATE}-" in r or "HRLC" in r]
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    found += [f"mount {m.split()[4]}" for m in mounts
              if f"/{TEMPLATE}-" in m.split()[4]]  # fmt: skip
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if pid != os.getpid() and (f"/{TEMPLATE}-" in cmdline or f"{CLASS_DIR}/" in cmdline):
            found.append(f"process {pid}: {cmdline[:120]}")
    cgroups = Path("/sys/fs/cgroup")
    for root in (cgroups, *[p for p in cgroups.iterdir() if p.is_dir()]):
        found += [f"cgroup {p}" for p in (root / "ha-registry-lab").glob(f"{TEMPLATE}-*")]
    passwd = Path("/etc/passwd").read_text().splitlines()
    found += [f"account {line.split(':')[0]}" for line in passwd
              if line.startswith(f"{TEMPLATE}-")]  # fmt: skip
    if CLASS_DIR.exists():  # only the bring-up logs may stay
        found += [f"file {p}" for p in CLASS_DIR.iterdir() if p.name != "logs"]
    return found


def _emergency_cleanup() -> None:
    """If class.destroy itself failed: remove what the test made, by name and PID only."""
    for trainee in ("1", "2", "3"):
        if _spec(trainee).exists():
            run_inv("lab.destroy", "--spec", str(_spec(trainee)), timeout=300)
    rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
    for rule in rules.splitlines():
        if rule.startswith("-A ") and "HRLC" in rule and f"{TEMPLATE}-" in rule:
            subprocess.run(["iptables", "-D", *rule.split()[1:]], check=False)
    for chain in [r.split()[1] for r in rules.splitlines() if r.startswith("-N HRLC")]:
        if f"{TEMPLATE}-" in chain:
            subprocess.run(["iptables", "-F", chain], check=False)
            subprocess.run(["iptables", "-X", chain], check=False)
    pidfile = CLASS_DIR / "sshd" / "sshd.pid"
    if pidfile.exists():
        subprocess.run(["kill", pidfile.read_text().strip()], check=False)
    for line in Path("/etc/passwd").read_text().splitlines():
        if line.startswith(f"{TEMPLATE}-") and "ha-registry-lab class" in line:
            subprocess.run(["userdel", line.split(":")[0]], check=False)
    shutil.rmtree(CLASS_DIR, ignore_errors=True)


@pytest.fixture(scope="module")
def klass(default_lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Three full labs, all at once (they mostly wait on swarm elections and MinIO)."""
    assert not _leftovers(), "a class of this name is already here"
    data = yaml.safe_load(yaml.safe_dump(default_lab))
    data["name"] = TEMPLATE
    template = tmp_path_factory.mktemp("class") / "template.yaml"
    template.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        started = time.monotonic()
        up = run_inv("class.up", "--trainees", "3", "--spec", str(template), "--pool", POOL,
                     "--parallel", "3", "--ssh-port", str(SSH_PORT), timeout=2400)  # fmt: skip
        print(f"class of 3 up in {time.monotonic() - started:.0f} s")
        assert up.returncode == 0, _tail(up)
        yield template
    finally:
        run_inv("class.destroy", "--spec", str(template), timeout=600)
        if _leftovers():
            _emergency_cleanup()
        shutil.rmtree(CLASS_DIR, ignore_errors=True)  # the bring-up logs class.destroy keeps


def test_each_trainee_has_a_full_lab_of_their_own(klass: Path) -> None:
    status = _status(klass)
    labs = {lab["trainee"]: lab for lab in status["labs"]}
    assert sorted(labs) == ["1", "2", "3"]
    assert len({lab["subnet"] for lab in labs.values()}) == 3
    for lab in labs.values():
        assert lab["lab"] == f"{TEMPLATE}-{lab['trainee']}"
        assert set(lab["kinds"].values()) == {"kit"}, lab["kinds"]
        assert lab["memory"]["pss_mb"] > 100 and lab["memory"]["processes"] > 10
    assert (CLASS_DIR / "status.html").read_text().count("<tr>") == 4  # header + 3 labs


def test_a_trainee_cannot_reach_another_lab_or_the_host(klass: Path) -> None:
    one, two = _lab("1"), _lab("2")
    host_one = one["network"]["subnet"].replace(".0/24", ".1")
    host_two = two["network"]["subnet"].replace(".0/24", ".1")
    with socket.socket() as listener:  # a host service that is not the mirror
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        port = listener.getsockname()[1]
        # Trainees are root in their nodes' namespaces: two of them route the whole pool
        # through the host (both ways), so only the host's rules can keep them apart.
        for trainee, host in (("1", host_one), ("2", host_two)):
            routed = _on_node(trainee, "ip", "route", "add", "10.215.0.0/16", "via", host)
            assert routed.returncode == 0, _tail(routed)
        try:
            assert _probe("1", host_one, 5000) == "open"  # its own mirror: allowed
            assert _probe("1", two["nodes"][0]["ip"], 22).startswith("closed")
            assert _probe("1", host_two, 5000).startswith("closed")  # lab 2's mirror
            assert _probe("1", host_one, port).startswith("closed")
            assert _probe("1", host_one, SSH_PORT).startswith("closed")
        finally:
            for trainee in ("1", "2"):
                _on_node(trainee, "ip", "route", "del", "10.215.0.0/16")


def test_a_trainee_login_reaches_only_their_own_nodes(klass: Path, tmp_path: Path) -> None:
    key = CLASS_DIR / "access" / "1" / f"{TEMPLATE}-1_ed25519"
    assert key.stat().st_mode & 0o777 == 0o600
    sheet = (CLASS_DIR / "access" / "1" / "ACCESS.md").read_text()
    assert f"-J {TEMPLATE}-1@" in sheet and "BEGIN OPENSSH" not in sheet
    opts = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", f"UserKnownHostsFile={tmp_path / 'known'}", "-i", str(key)]  # fmt: skip
    door = ["ssh", *opts, "-p", str(SSH_PORT), f"{TEMPLATE}-1@127.0.0.1"]
    jump = f"ProxyCommand={' '.join(door)} -W %h:%p"
    own = subprocess.run(["ssh", *opts, "-o", jump, f"root@{_lab('1')['nodes'][0]['ip']}",
                          "hostname"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert own.stdout.strip() == "coreos1", _tail(own)
    other = subprocess.run([*door, "-W", f"{_lab('2')['nodes'][0]['ip']}:22"],
                           capture_output=True, text=True, timeout=60, input="")  # fmt: skip
    assert other.returncode != 0 and "prohibited" in other.stderr, _tail(other)
    shell = subprocess.run(door, capture_output=True, text=True, timeout=60, input="")
    assert "not available" in shell.stdout + shell.stderr or shell.returncode != 0


def test_the_instructor_grades_one_trainee(klass: Path) -> None:
    before = {lab["trainee"]: lab["last_check"] for lab in _status(klass)["labs"]}
    graded = run_inv("class.grade", "2", "verify", "--spec", str(klass), timeout=300)
    assert graded.returncode == 0, _tail(graded)
    assert "phase verify: checks passed" in graded.stdout
    after = {lab["trainee"]: lab["last_check"] for lab in _status(klass)["labs"]}
    assert after["2"] > before["2"] and after["1"] == before["1"]


def test_destroying_one_lab_takes_seconds_and_spares_the_others(klass: Path) -> None:
    started = time.monotonic()
    gone = run_inv("class.destroy", "--trainee", "3", "--spec", str(klass), timeout=300)
    seconds = time.monotonic() - started
    assert gone.returncode == 0, _tail(gone)
    print(f"one lab destroyed beside two in {seconds:.1f} s")
    assert seconds < 30, f"destroying one lab took {seconds:.0f} s"
    assert [lab["trainee"] for lab in _status(klass)["labs"]] == ["1", "2"]
    assert not any(f"{TEMPLATE}-3" in item for item in _leftovers())
    for trainee in ("1", "2"):
        check = run_inv("phase", "verify", "--check", "--spec", str(_spec(trainee)), timeout=300)
        assert check.returncode == 0, _tail(check)


def test_destroying_the_class_leaves_nothing(klass: Path) -> None:
    gone = run_inv("class.destroy", "--spec", str(klass), timeout=600)
    assert gone.returncode == 0, _tail(gone)
    assert _leftovers() == []
    with socket.socket() as probe:
        probe.settimeout(2)
        assert probe.connect_ex(("127.0.0.1", SSH_PORT)) != 0  # the class sshd is gone
