"""The classroom (issue 13) without root: names, the subnet pool, each trainee's lab file,
the isolation rules, the SSH door's configuration, and the instructor's page in Chromium."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.classroom import access, isolation, roster
from lab.classroom.roster import ClassRecord
from lab.classroom.status import LabRow, phase_kind, render_html
from lab.errors import UsageError
from lab.phases import PHASES
from lab.spec import load_spec
from tests.helpers import run_inv

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture
def template(lab_data: dict[str, Any], tmp_path: Path) -> Path:
    lab_data["name"] = "clsunit"  # no class of this name is ever brought up
    path = tmp_path / "template.yaml"
    path.write_text(yaml.safe_dump(lab_data, sort_keys=False))
    return path


# ------------------------------------------------------------------ names


@pytest.mark.parametrize("name", ["1", "40", "alice", "bob-2", "a" * 28])
def test_good_trainee_names(name: str) -> None:
    roster.check_trainee_name(name, "cls")


@pytest.mark.parametrize("name", ["", "Alice", "-a", "a-", "a--b", "a b", "a;rm", "é", "a" * 29,
                                  "a\nb", "../x"])  # fmt: skip
def test_bad_trainee_names_are_refused(name: str) -> None:
    with pytest.raises(UsageError):
        roster.check_trainee_name(name, "cls")


def test_trainees_by_number_and_bounds() -> None:
    assert roster.trainees_from(3, None, "cls") == ["1", "2", "3"]
    for count in (0, -1, roster.MAX_TRAINEES + 1):
        with pytest.raises(UsageError, match="between 1 and"):
            roster.trainees_from(count, None, "cls")
    with pytest.raises(UsageError, match="how many"):
        roster.trainees_from(None, None, "cls")


def test_trainees_from_a_file(tmp_path: Path) -> None:
    names = tmp_path / "names"
    names.write_text("# room 2\nalice\n\n bob \ncarol-1\n")
    assert roster.trainees_from(None, str(names), "cls") == ["alice", "bob", "carol-1"]
    with pytest.raises(UsageError, match="names 3"):
        roster.trainees_from(2, str(names), "cls")
    names.write_text("alice\nBob\n")
    with pytest.raises(UsageError, match="line 2"):
        roster.trainees_from(None, str(names), "cls")
    names.write_text("alice\nalice\n")
    with pytest.raises(UsageError, match="twice"):
        roster.trainees_from(None, str(names), "cls")
    with pytest.raises(UsageError, match="cannot read"):
        roster.trainees_from(None, str(tmp_path / "missing"), "cls")


# ------------------------------------------------------------------- pool


@pytest.mark.parametrize("text", ["10.215.0.0/33", "8.8.0.0/16", "10.215.0.1/16", "nonsense",
                                  "192.168.0.0/20"])  # fmt: skip
def test_bad_pools_are_refused(text: str) -> None:
    with pytest.raises(UsageError):
        roster.parse_pool(text)


def _record(pool: str = "10.215.0.0/20") -> ClassRecord:
    return ClassRecord("cls", "t.yaml", pool, 2222)


def test_slots_are_stable_and_skip_the_hosts_networks() -> None:
    record = _record()
    taken = [ipaddress.IPv4Network("10.215.1.0/24")]  # another lab, or the host's own
    roster.assign_slots(record, ["1", "2", "3"], 24, taken)
    assert record.trainees == {"1": 0, "2": 2, "3": 3}
    roster.assign_slots(record, ["3", "4", "1"], 24, [])  # a re-run: nobody moves
    assert record.trainees == {"1": 0, "2": 2, "3": 3, "4": 1}
    subnets = {roster.slot_subnet(ipaddress.IPv4Network(record.pool), 24, s)
               for s in record.trainees.values()}  # fmt: skip
    assert len(subnets) == 4 and all(s.subnet_of(ipaddress.IPv4Network("10.215.0.0/20"))
                                     for s in subnets)  # fmt: skip


def test_a_full_pool_is_an_error() -> None:
    record = _record("10.215.0.0/23")
    roster.assign_slots(record, ["1", "2"], 24, [])
    with pytest.raises(UsageError, match="no free"):
        roster.assign_slots(record, ["3"], 24, [])
    with pytest.raises(UsageError, match="does not fit"):
        roster.assign_slots(_record("10.215.0.0/25"), ["1"], 24, [])


def test_a_trainees_lab_moves_every_address(lab_data: dict[str, Any], tmp_path: Path) -> None:
    lab_data["name"] = "cls"
    lab_data["network"]["host_ip"] = "172.17.8.254"
    lab_data["loadbalancer"].update(nodes=["coreos1", "coreos2"], vip="172.17.8.100")
    lab_data["loadbalancer"].pop("node", None)
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(lab_data))
    data, spec = roster.load_template(path)
    subnet = ipaddress.IPv4Network("10.215.3.0/24")
    moved = roster.trainee_lab_data(data, spec, "cls-7", subnet)
    assert moved["name"] == "cls-7" and moved["network"]["subnet"] == "10.215.3.0/24"
    assert [n["ip"] for n in moved["nodes"]] == ["10.215.3.101", "10.215.3.102", "10.215.3.103"]
    assert moved["network"]["host_ip"] == "10.215.3.254"
    assert moved["loadbalancer"]["vip"] == "10.215.3.100"
    assert data["name"] == "cls"  # the template's data is untouched
    record_spec = tmp_path / "7.yaml"
    record_spec.write_text(yaml.safe_dump(moved))
    assert load_spec(record_spec).network.network == subnet  # lab.yaml's own checks agree


def test_a_template_with_one_shared_export_is_refused(
    lab_data: dict[str, Any], tmp_path: Path
) -> None:
    lab_data["nfs"]["export"] = str(tmp_path / "shared")
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(lab_data))
    with pytest.raises(UsageError, match="relative nfs.export"):
        roster.load_template(path)


# -------------------------------------------------------------- isolation


def _spec(tmp_path: Path, lab_data: dict[str, Any], name: str = "cls-1"):  # noqa: ANN202
    lab_data["name"] = name
    lab_data["network"] = {"subnet": "10.215.0.0/24"}
    for i, node in enumerate(lab_data["nodes"], start=1):
        node["ip"] = f"10.215.0.{100 + i}"
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(lab_data))
    return load_spec(path)


def test_isolation_rules_allow_only_the_bridge_the_mirror_and_answers(
    lab_data: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec(tmp_path, lab_data, "cls-" + "a" * 28)
    calls: list[list[str]] = []

    def fake_run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 1 if argv[1] in ("-n", "-C", "-D") else 0, "", "")

    monkeypatch.setattr(isolation, "run", fake_run)
    isolation.isolate(spec)
    chains = isolation.chain_names(spec)
    assert all(len(c) <= isolation.MAX_CHAIN for c in chains.values())
    bridge = isolation.bridge_name(spec)
    rules = {chain: [c[3:] for c in calls if c[1] == "-A" and c[2] == chain]
             for chain in chains.values()}  # fmt: skip
    answers = ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"]
    assert rules[chains["FORWARD"]] == [["-o", bridge, "-j", "RETURN"], answers, ["-j", "DROP"]]
    mirror = ["-d", "10.215.0.1", "-p", "tcp", "--dport", "5000", "-j", "RETURN"]
    assert rules[chains["INPUT"]] == [answers, mirror, ["-j", "DROP"]]
    jumps = [c for c in calls if c[1] == "-I"]
    assert {j[2] for j in jumps} == {"INPUT", "FORWARD"}
    assert all(j[j.index("-i") + 1].startswith("hrl-") for j in jumps)


# ------------------------------------------------------------------ access


@pytest.fixture
def sshd_privsep_dir() -> Iterator[None]:
    """``sshd -t`` refuses to check a config without /run/sshd: make it as root, then remove it."""
    made = os.geteuid() == 0 and not access.PRIVSEP_DIR.exists()
    if made:
        access.PRIVSEP_DIR.mkdir(mode=0o755)
    yield
    if made:
        access.PRIVSEP_DIR.rmdir()


@pytest.mark.usefixtures("sshd_privsep_dir")
def test_the_class_door_lets_each_account_open_only_its_own_nodes(
    lab_data: dict[str, Any], tmp_path: Path
) -> None:
    spec = _spec(tmp_path, lab_data)
    trainee = access.Trainee("1", spec, tmp_path / "access" / "1")
    trainee.directory.mkdir(parents=True)
    key = trainee.key_file
    key.with_name(key.name + ".pub").write_text("ssh-ed25519 AAAAfake cls-1@class\n")
    door = access.ClassSshd(tmp_path / "sshd", 2215)
    door.write([trainee])
    keys = (door.keys_dir / "cls-1").read_text()
    assert keys.startswith("restrict,port-forwarding,permitopen=\"10.215.0.101:22\"")
    assert keys.count("permitopen=") == 3
    config = door.config.read_text()
    for line in ("Port 2215", "PasswordAuthentication no", "PermitTTY no", "PermitOpen none",
                 "AllowUsers cls-1", "Match User cls-1",
                 "PermitOpen 10.215.0.101:22 10.215.0.102:22 10.215.0.103:22"):  # fmt: skip
        assert line in config
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    tested = subprocess.run([sshd, "-t", "-f", str(door.config)], capture_output=True, text=True)
    not_root = ("must be owned by root", "Missing privilege separation directory")
    assert tested.returncode == 0 or (
        os.geteuid() != 0 and any(reason in tested.stderr for reason in not_root)
    ), tested.stderr
    sheet = access.sheet_text(trainee, "192.0.2.2", 2215)
    assert "ssh -i ~/.ssh/cls-1_ed25519 -J cls-1@192.0.2.2:2215 root@10.215.0.101" in sheet
    assert "PRIVATE KEY" not in sheet


# ------------------------------------------------------------------ status


def _row(trainee: str, kinds: dict[str, str]) -> LabRow:
    phases = {p: {"progress": kinds[p], "failed_checks": ["minio answers"] if kinds[p] ==
                  "failing" else []} for p in PHASES}  # fmt: skip
    data = {"kinds": kinds, "phases": phases, "subnet": "10.215.0.0/24",
            "last_check": "2026-11-30T05:00:00Z",
            "memory": {"processes": 55, "rss_mb": 1000.0, "pss_mb": 630.0}}  # fmt: skip
    return LabRow(trainee, f"cls-{trainee}", data)


def test_phase_kinds() -> None:
    base = {"status": "passed", "by": "kit", "stale": False}
    assert phase_kind(base) == "kit"
    assert phase_kind({**base, "by": "trainee"}) == "hand"
    assert phase_kind({**base, "status": "failed"}) == "failing"
    assert phase_kind({**base, "status": "reset"}) == "turn"
    assert phase_kind({**base, "status": None}) == "todo"
    assert phase_kind({**base, "stale": True}) == "stale"


def test_the_instructors_page_renders_in_headless_chromium(tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: run ./setup.sh (apt-get install chromium)"
    kit = dict.fromkeys(PHASES, "kit")
    mixed = {**kit, "minio": "hand", "bucket": "failing", "redis": "todo"}
    rows = [_row("1", kit), _row("<b>2</b>", mixed)]
    page = tmp_path / "status.html"
    text = render_html("cls", rows, refresh=10)
    page.write_text(text)
    assert "<b>2</b>" not in text and "http://" not in text and "<script" not in text
    assert 'http-equiv="refresh" content="10"' in text
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        flags = [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1400,400",
                        page.as_uri()], capture_output=True, timeout=120)  # fmt: skip
        dom = subprocess.run([chromium, *flags, "--dump-dom", page.as_uri()],
                             capture_output=True, text=True, timeout=120).stdout  # fmt: skip
    assert dom.count('<td class="failing"') == 1 and dom.count('<td class="hand"') == 1
    assert "minio answers" in dom and "630 MB PSS" in dom
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1400, 400)
        assert len(image.convert("RGB").getcolors(maxcolors=1_000_000) or []) > 20


# --------------------------------------------------------------------- CLI


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trainees", "0"], "between 1 and"),
        (["--trainees", "x"], "whole number"),
        (["--trainees", "2", "--parallel", "99"], "--parallel"),
        (["--trainees", "2", "--provider", "vagrant"], "local provider"),
        (["--trainees", "2", "--pool", "8.8.8.0/24"], "private"),
    ],
)
def test_class_up_refuses_bad_input_in_one_line(
    template: Path, args: list[str], message: str
) -> None:
    result = run_inv("class.up", "--spec", str(template), *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr


def test_a_bad_names_file_is_one_line(template: Path, tmp_path: Path) -> None:
    names = tmp_path / "names"
    names.write_text("alice\nrm -rf\n")
    result = run_inv("class.up", "--spec", str(template), "--names", str(names))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {names} line 2: 'rm -rf' is not a trainee name: a-z, 0-9 and inner '-', "
        "1-32 characters"
    ]


def test_status_of_a_class_that_is_not_there(template: Path) -> None:
    result = run_inv("class.status", "--spec", str(template))
    assert result.returncode == 2 and "there is no class clsunit" in result.stderr


def test_one_lab_failing_is_reported_and_the_others_still_come_up(
    lab_data: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each lab comes up in its own process: trainee 2's failure is its own line."""
    import sys

    from lab.classroom import runner

    def fake_inv(*args: str) -> list[str]:
        spec = args[args.index("--spec") + 1]
        code = "print('error: phase minio: checks failed'); raise SystemExit(1)" if spec.endswith(
            "2.yaml") else "print('lab is up')"  # fmt: skip
        return [sys.executable, "-c", code]

    monkeypatch.setattr(runner, "_inv", fake_inv)
    monkeypatch.setattr(runner, "build_dir", lambda name: tmp_path / "build" / name)
    record = ClassRecord("cls", "t.yaml", "10.215.0.0/20", 2222)
    monkeypatch.setattr(ClassRecord, "directory", property(lambda self: tmp_path / "class"))
    trainees = [access.Trainee(str(i), _spec(tmp_path, lab_data, f"cls-{i}"), tmp_path / str(i))
                for i in (1, 2, 3)]  # fmt: skip
    outcomes = runner._bring_up(record, trainees, parallel=2, until=None)
    assert [o.ok for o in outcomes] == [True, False, True]
    assert outcomes[1].detail == "FAILED (exit 1): error: phase minio: checks failed"
    assert (tmp_path / "class" / "logs" / "2-up.log").read_text().startswith("error:")


def test_watch_rewrites_the_page_until_ctrl_c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lab.classroom import runner

    record = ClassRecord("cls", "t.yaml", "10.215.0.0/20", 2222)
    monkeypatch.setattr(runner, "resolve_class", lambda spec: record)
    monkeypatch.setattr(runner, "_class_trainees", lambda rec: [])
    pages: list[str] = []
    page = tmp_path / "status.html"

    def fake_sleep(seconds: float) -> None:
        assert seconds == 5
        pages.append(page.read_text())
        if len(pages) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(runner.time, "sleep", fake_sleep)
    assert runner.status(None, as_json=True, watch=True, interval=5, page=str(page)) == page
    assert len(pages) == 2 and all('content="5"' in p for p in pages)
    assert capsys.readouterr().out.count('"class": "cls"') == 2
    for bad in (1, 301):
        with pytest.raises(UsageError, match="--interval"):
            runner.status(None, as_json=True, watch=True, interval=bad, page=str(page))


def test_ctrl_c_stops_every_lab_up_and_starts_no_more(
    lab_data: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C: each running `inv lab.up` gets SIGINT (it keeps its last checkpoint, and
    its provider is recorded, so class.destroy removes it); queued labs never start."""
    import sys
    import time

    from lab.classroom import runner
    from lab.errors import LabError

    started: list[str] = []
    code = ("import signal, sys, time\n"
            "signal.signal(signal.SIGINT, lambda *a: sys.exit(130))\n"
            "time.sleep(60)")  # fmt: skip

    def fake_inv(*args: str) -> list[str]:
        started.append(args[args.index("--spec") + 1])
        return [sys.executable, "-c", code]

    def interrupted(chosen: object, futures: object) -> None:
        time.sleep(1.5)  # both running labs have started
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "_inv", fake_inv)
    monkeypatch.setattr(runner, "_watch_progress", interrupted)
    monkeypatch.setattr(ClassRecord, "directory", property(lambda self: tmp_path / "class"))
    record = ClassRecord("cls", "t.yaml", "10.215.0.0/20", 2222)
    trainees = [access.Trainee(str(i), _spec(tmp_path, lab_data, f"cls-{i}"), tmp_path / str(i))
                for i in (1, 2, 3)]  # fmt: skip
    began = time.monotonic()
    with pytest.raises(LabError) as caught:
        runner._bring_up(record, trainees, parallel=2, until=None)
    assert caught.value.exit_code == 130 and "class.destroy" in str(caught.value)
    assert time.monotonic() - began < 30  # the labs stopped at once, not after 60 s
    assert len(started) == 2  # the third lab never started
