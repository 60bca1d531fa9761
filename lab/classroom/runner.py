"""The class verbs: ``up``, ``destroy``, ``status`` and ``grade``, composed from roster,
isolation, access and status. tasks.py calls these and nothing else.

Each lab comes up by ``inv lab.up`` in its own process, at most ``parallel`` at once:
a lab's failure (or its console) cannot reach the others, and a lab stopped half-way
is still a lab ``inv lab.destroy`` (and so ``class.destroy``) removes, because
``lab.up`` records its provider before it makes anything.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from lab.classroom import access, isolation, roster
from lab.classroom.access import ClassSshd, Trainee
from lab.classroom.roster import ClassRecord
from lab.classroom.status import (
    WATCH_BOUNDS,
    class_json,
    lab_row,
    render_html,
    table_rows,
    write_page,
)
from lab.errors import LabError, UsageError
from lab.host import require_root
from lab.host.bridge import bridge_name
from lab.host.proc import run
from lab.output import make_console
from lab.paths import DEFAULT_SPEC, REPO_ROOT, access_sheet_file, build_dir
from lab.phases import PHASES, phase_module
from lab.spec import LabSpec, load_spec
from lab.state import LabState

console = make_console()
MAX_PARALLEL = 8
DEFAULT_PARALLEL = 2  # two cores: more labs at once only queue for the CPU
PROGRESS_EVERY = 20.0  # seconds between two progress lines while labs come up
INTERRUPT_GRACE = 60.0  # how long a lab.up may take to stop after Ctrl-C


@dataclass
class Outcome:
    trainee: str
    lab: str
    ok: bool
    seconds: float
    detail: str


# ------------------------------------------------------------------ helpers


def _inv(*args: str) -> list[str]:
    return [sys.executable, "-m", "invoke", "--search-root", str(REPO_ROOT), *args]


def resolve_class(spec_file: str | None) -> ClassRecord:
    """The class of this template, or the only class there is."""
    if spec_file is not None:
        name = load_spec(spec_file).name
    else:
        known = roster.known_classes()
        if len(known) != 1:
            listed = ", ".join(known) or "none"
            raise UsageError(f"say which class with --spec TEMPLATE (classes here: {listed})")
        name = known[0]
    record = ClassRecord.load(name)
    if record is None:
        raise UsageError(f"there is no class {name}: `inv class.up --spec TEMPLATE` makes one")
    return record


def trainee_of(record: ClassRecord, trainee: str) -> Trainee:
    spec = load_spec(record.spec_file(trainee))
    return Trainee(trainee, spec, record.directory / "access" / trainee)


def _class_trainees(record: ClassRecord) -> list[Trainee]:
    return [trainee_of(record, t) for t in sorted(record.trainees, key=record.trainees.get)]


def _taken_networks(record: ClassRecord) -> list[ipaddress.IPv4Network]:
    """Networks on this host, except the bridges of this class's own labs."""
    ours = {bridge_name(load_spec(record.spec_file(t))) for t in record.trainees
            if record.spec_file(t).exists()}  # fmt: skip
    taken = []
    for line in run(["ip", "-o", "-4", "addr", "show"]).stdout.splitlines():
        fields = line.split()
        if "inet" in fields and fields[1] not in ours:
            taken.append(ipaddress.IPv4Interface(fields[fields.index("inet") + 1]).network)
    return taken


# ----------------------------------------------------------------------- up


def up(
    trainees: int | None,
    spec_file: str | None,
    provider: str,
    names_file: str | None,
    parallel: int,
    pool: str | None,
    ssh_port: int,
    until: str | None = None,
) -> list[Outcome]:
    """Make (or complete) every trainee's lab; one lab's failure does not stop the rest."""
    if provider != "local":
        raise UsageError(f"a class runs on the local provider (one server), not {provider!r}")
    if not 1 <= parallel <= MAX_PARALLEL:
        raise UsageError(f"--parallel must be between 1 and {MAX_PARALLEL}, not {parallel}")
    if not 1024 <= ssh_port <= 65535:
        raise UsageError(f"--ssh-port must be between 1024 and 65535, not {ssh_port}")
    if until is not None:
        phase_module(until)
    template_path = Path(spec_file or DEFAULT_SPEC).resolve()
    template, template_spec = roster.load_template(template_path)
    names = roster.trainees_from(trainees, names_file, template_spec.name)
    require_root(("ip", "iptables", "useradd", "userdel", "sshd"))
    record = _class_record(template_spec.name, template_path, pool, ssh_port)
    roster.assign_slots(record, names, template_spec.network.prefixlen, _taken_networks(record))
    pool_net = roster.parse_pool(record.pool)
    prefix = template_spec.network.prefixlen
    for name in names:  # every lab file is written and checked before anything is made
        subnet = roster.slot_subnet(pool_net, prefix, record.trainees[name])
        data = roster.trainee_lab_data(template, template_spec, record.lab_name(name), subnet)
        roster.write_trainee_spec(record, name, data)
    record.save()
    chosen = [trainee_of(record, n) for n in names]
    _prepare_access(record, chosen)
    outcomes = _bring_up(record, chosen, parallel, until)
    _report(record, outcomes)
    return outcomes


def _class_record(name: str, template: Path, pool: str | None, ssh_port: int) -> ClassRecord:
    record = ClassRecord.load(name)
    if record is None:
        chosen = str(roster.parse_pool(pool or roster.DEFAULT_POOL))
        return ClassRecord(name, str(template), chosen, ssh_port)
    if pool is not None and str(roster.parse_pool(pool)) != record.pool and record.trainees:
        raise UsageError(f"class {name} uses --pool {record.pool}: destroy it before changing")
    if record.trainees and ssh_port != record.ssh_port:
        raise UsageError(f"class {name} uses --ssh-port {record.ssh_port}: destroy it first")
    record.ssh_port = ssh_port
    return record


def _prepare_access(record: ClassRecord, chosen: list[Trainee]) -> None:
    """Before any node exists: isolation, accounts, keys (the nodes read them at boot)."""
    for trainee in chosen:
        isolation.isolate(trainee.spec)
        access.ensure_account(trainee, record.name)
        access.ensure_key(trainee, build_dir(trainee.spec.name))
    sshd = ClassSshd(record.directory / "sshd", record.ssh_port)
    sshd.write(_class_trainees(record))
    sshd.ensure_running()
    server = access.server_address()
    for trainee in chosen:
        sheet = access.write_sheet(trainee, server, record.ssh_port)
        shutil.copyfile(sheet, access_sheet_file(build_dir(trainee.spec.name)))  # workbook


def _bring_up(record: ClassRecord, chosen: list[Trainee], parallel: int,
              until: str | None) -> list[Outcome]:  # fmt: skip
    logs = record.directory / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    console.print(f"class {record.name}: {len(chosen)} labs, {parallel} at a time "
                  f"(logs in {logs})")  # fmt: skip

    def one(trainee: Trainee) -> Outcome:
        argv = _inv("lab.up", "--spec", str(record.spec_file(trainee.name)), "--provider",
                    "local", *(["--until", until] if until else []))  # fmt: skip
        log = logs / f"{trainee.name}-up.log"
        started = time.monotonic()
        console.print(f"  {trainee.spec.name}: coming up")
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=REPO_ROOT)  # fmt: skip
            procs[trainee.name] = proc
            code = proc.wait()
        seconds = time.monotonic() - started
        detail = "up" if code == 0 else _last_error(log, code)
        console.print(f"  {trainee.spec.name}: {detail} ({seconds:.0f} s)")
        return Outcome(trainee.name, trainee.spec.name, code == 0, seconds, detail)

    pool = ThreadPoolExecutor(max_workers=parallel)
    futures = [pool.submit(one, t) for t in chosen]
    try:
        _watch_progress(chosen, futures)
    except KeyboardInterrupt:
        _interrupt(procs, pool)
        message = ("class.up interrupted: the labs stop where they were; "
                   "`inv class.destroy` removes them, `inv class.up` goes on")  # fmt: skip
        raise LabError(message, 130) from None
    pool.shutdown()
    return [f.result() for f in futures]


def _watch_progress(chosen: list[Trainee], futures: list[Future[Outcome]]) -> None:
    """A line now and then: how many phases each lab has passed."""
    last = 0.0
    while not all(f.done() for f in futures):
        time.sleep(0.5)
        if time.monotonic() - last < PROGRESS_EVERY:
            continue
        last = time.monotonic()
        parts = []
        for trainee, future in zip(chosen, futures, strict=True):
            if future.done():
                continue
            state = LabState.load(build_dir(trainee.spec.name))
            done = sum(1 for p in PHASES if (r := state.phases.get(p)) and r.status == "passed")
            parts.append(f"{trainee.name} {done}/{len(PHASES)}")
        if parts:
            console.print("  progress: " + ", ".join(parts))


def _interrupt(procs: dict[str, subprocess.Popen[bytes]], pool: ThreadPoolExecutor) -> None:
    """Ctrl-C: each lab.up gets SIGINT (it stops at its last checkpoint); no new lab starts."""
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + INTERRUPT_GRACE
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _last_error(log: Path, code: int) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    shown = (errors or lines or [f"exit code {code}"])[-1]
    return f"FAILED (exit {code}): {shown[:200]}"


def _report(record: ClassRecord, outcomes: list[Outcome]) -> None:
    good = [o for o in outcomes if o.ok]
    console.print(f"class {record.name}: {len(good)} of {len(outcomes)} labs up; access sheets "
                  f"in {record.directory / 'access'}/<trainee>/ACCESS.md")  # fmt: skip
    for o in outcomes:
        if not o.ok:
            console.print(f"  {o.lab}: {o.detail} (log {record.directory}/logs/{o.trainee}-up.log)")


# ------------------------------------------------------------------ destroy


def destroy(spec_file: str | None, trainee: str | None) -> float:
    """One trainee's lab, or the whole class; leaves nothing of them. Returns seconds."""
    started = time.monotonic()
    record = resolve_class(spec_file)
    require_root(("ip", "iptables", "userdel"))
    if trainee is not None and trainee not in record.trainees:
        listed = ", ".join(sorted(record.trainees)) or "none"
        raise UsageError(f"class {record.name} has no trainee {trainee[:40]!r} ({listed})")
    names = [trainee] if trainee is not None else sorted(record.trainees)
    for name in names:
        _destroy_one(record, name)
        del record.trainees[name]
        record.save()
    sshd = ClassSshd(record.directory / "sshd", record.ssh_port)
    if record.trainees:
        sshd.write(_class_trainees(record))
        sshd.ensure_running()
    else:
        sshd.stop()
        for account in access.class_accounts(record.name):
            access.remove_account(account, record.name)
        _remove_class_dir(record)
    seconds = time.monotonic() - started
    what = f"lab {record.lab_name(trainee)}" if trainee else f"class {record.name}"
    console.print(f"{what} destroyed in {seconds:.1f} s")
    return seconds


def _remove_class_dir(record: ClassRecord) -> None:
    """Everything of the class's directory but the bring-up logs: a failure stays readable."""
    for entry in record.directory.iterdir():
        if entry.name == "logs":
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _destroy_one(record: ClassRecord, name: str) -> None:
    lab = record.lab_name(name)
    spec_file = record.spec_file(name)
    if spec_file.exists():
        spec = load_spec(spec_file)
        argv = _inv("lab.destroy", "--spec", str(spec_file))
        proc = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            said = (proc.stdout + proc.stderr).strip()[-300:]
            raise LabError(f"lab {lab} was not destroyed: {said}")
        isolation.release(spec)
    access.remove_account(lab, record.name)
    shutil.rmtree(build_dir(lab), ignore_errors=True)
    shutil.rmtree(record.directory / "access" / name, ignore_errors=True)
    spec_file.unlink(missing_ok=True)
    console.print(f"  {lab}: destroyed")


# ------------------------------------------------------------------- status


def status(spec_file: str | None, as_json: bool, watch: bool, interval: float,
            page: str | None) -> Path:  # fmt: skip
    """Print the class once (or every ``interval`` seconds with --watch) and write the page."""
    low, high = WATCH_BOUNDS
    if not low <= interval <= high:
        raise UsageError(f"--interval must be between {low:.0f} and {high:.0f} seconds")
    record = resolve_class(spec_file)
    target = Path(page).resolve() if page else record.directory / "status.html"
    while True:
        rows = [lab_row(t.name, t.spec) for t in _class_trainees(record)]
        write_page(target, render_html(record.name, rows, interval if watch else None))
        if as_json:
            print(json.dumps(class_json(record.name, rows), indent=1, sort_keys=True), flush=True)
        else:
            _print_table(record, rows, target)
        if not watch:
            return target
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            return target


def _print_table(record: ClassRecord, rows: list, page: Path) -> None:  # noqa: ANN001
    from rich.table import Table

    table = Table(title=f"class {record.name} ({len(rows)} labs)")
    for column in ("trainee", "lab", *PHASES, "last check (UTC)", "memory"):
        table.add_column(column)
    for cells in table_rows(rows):
        table.add_row(*cells)
    console.print(table)
    console.print(f"page: {page}")


# -------------------------------------------------------------------- grade


def grade(spec_file: str | None, trainee: str, phase: str) -> bool:
    """`inv phase PHASE --check` on one trainee's lab: recorded, so status shows it."""
    phase_module(phase)
    record = resolve_class(spec_file)
    if trainee not in record.trainees:
        raise UsageError(f"class {record.name} has no trainee {trainee[:40]!r}")
    argv = _inv("phase", phase, "--check", "--spec", str(record.spec_file(trainee)))
    proc = subprocess.run(argv, cwd=REPO_ROOT, check=False)
    return proc.returncode == 0


def specs_of(record: ClassRecord) -> list[LabSpec]:
    return [t.spec for t in _class_trainees(record)]

