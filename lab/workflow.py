"""The user's verbs — up, phase, status, destroy, images, box — composed from spec,
render, validate, a provider and the engine. tasks.py calls these and nothing else.

Which provider a lab uses is one rule: ``--provider`` if given, else the one recorded
in ``build/<lab>/state.json`` (recorded when ``up`` starts, so a failed or killed
``up`` is still destroyed with the right provider), else ``vagrant`` for ``up``;
``destroy`` with nothing recorded removes only what ``lab.images`` / ``lab.box``
left on the host (the lab's bridge and mirror).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from lab.engine import FIRST_CHECKPOINT, Engine, OfflineShell, SshShell
from lab.errors import LabError, UsageError
from lab.host import LabHost
from lab.output import make_console
from lab.paths import DEFAULT_SPEC, build_dir
from lab.phases import PHASES, phase_module
from lab.phases.context import PhaseContext
from lab.providers import DEFAULT_PROVIDER, make_provider, provider_class
from lab.providers.base import Provider
from lab.remote import Remote, known_hosts_file
from lab.render import render
from lab.secrets import PUSH_USER, READ_USER, ensure_secrets
from lab.spec import LabSpec, load_spec
from lab.state import RESET, TRAINEE, LabState, PhaseRecord
from lab.trainee import explain_lines, guide, next_steps_lines

if TYPE_CHECKING:
    from lab.drills.report import Verdict

console = make_console(record=True)  # each phase's output is kept as its transcript


@dataclass
class Lab:
    spec: LabSpec
    build: Path
    provider: Provider
    lb_kind: str


def _provider_name(build: Path, wanted: str | None) -> str:
    recorded = LabState.load(build).provider
    if wanted and recorded and wanted != recorded:
        raise UsageError(
            f"this lab was brought up with --provider {recorded}; "
            f"run `inv lab.destroy` before switching to {wanted}"
        )
    return wanted or recorded or DEFAULT_PROVIDER


def load(spec_file: str | None, out: str | None) -> tuple[LabSpec, Path]:
    spec = load_spec(spec_file or DEFAULT_SPEC)
    return spec, build_dir(spec.name, out)


def open_lab(spec_file: str | None, out: str | None, provider: str | None) -> Lab:
    """Load the spec and adapt it to what the provider's nodes can run."""
    spec, build = load(spec_file, out)
    name = _provider_name(build, provider)
    provider_class(name)  # an unknown name is a usage error before anything else
    chosen = make_provider(name, spec, build, say=console.print)
    adapted, lb_kind = adapt_to_provider(spec, chosen)
    return Lab(adapted, build, chosen, lb_kind)


def open_running_lab(spec_file: str | None, out: str | None) -> Lab:
    """A lab that was brought up: one line saying so when it was not."""
    spec, build = load(spec_file, out)
    if LabState.load(build).provider is None:
        raise UsageError(f"lab {spec.name} is not up: run `inv lab.up --provider NAME` first")
    return open_lab(spec_file, out, None)


def adapt_to_provider(spec: LabSpec, provider: Provider) -> tuple[LabSpec, str]:
    """Images the nodes cannot have are replaced by the provider's stand-ins, and offline
    builds run under the tag of the version they hold."""
    minio_image, lb_kind = provider.image_substitutes()
    if minio_image != spec.minio.image:
        minio = spec.minio.model_copy(update={"image": minio_image})
        spec = spec.model_copy(update={"minio": minio})
    return _swap_images(spec, provider.offline_images()), lb_kind


def _swap_images(spec: LabSpec, swaps: dict[str, str]) -> LabSpec:
    """``spec`` with every image field of these sections named in ``swaps`` replaced."""
    update = {}
    for section in ("demo", "registry", "redis", "loadbalancer"):
        model = getattr(spec, section)
        fields = {
            k: swaps[v] for k, v in model.model_dump().items() if isinstance(v, str) and v in swaps
        }
        if fields:
            update[section] = model.model_copy(update=fields)
    return spec.model_copy(update=update) if update else spec


def context(lab: Lab, demo: bool = False) -> PhaseContext:
    return PhaseContext(
        spec=lab.spec,
        build=lab.build,
        caps=lab.provider.capabilities,
        secrets=ensure_secrets(lab.build),
        lb_kind=lab.lb_kind,
        demo=demo,
    )


TLS_OFF_WARNING = (
    "registry.tls is false: plain HTTP, no login, anyone on the lab network may push "
    "(the tutorial's way)"
)


def _front_url(spec: LabSpec) -> str:
    scheme = "https" if spec.registry.tls else "http"
    return f"{scheme}://{spec.front_address}:{spec.loadbalancer.port}"


def _render_and_validate(lab: Lab, validate: bool) -> None:
    caps = lab.provider.capabilities
    if not caps.ipvs:
        console.print("no IPVS on these nodes: publishing with mode: host, endpoint_mode: dnsrr")
    if not lab.spec.registry.tls:
        console.print(f"[yellow]warning:[/yellow] {TLS_OFF_WARNING}")
    for wanted, honest in sorted(lab.provider.offline_images().items()):
        console.print(f"{wanted} runs as {honest}: the offline build of Debian's package")
    result = render(lab.spec, lab.build, caps)
    console.print(f"rendered {len(result.files)} files into {result.build}")
    if validate:
        from lab.validate import print_results
        from lab.validate import validate as validate_build

        if not print_results(validate_build(lab.build, lab.spec)):
            raise LabError("rendered files did not validate (see the table above)")


def _run_engine(action, lab: Lab, demo: bool = False):  # noqa: ANN001, ANN202
    remote = Remote(lab.provider.nodes(), known_hosts_file(lab.build), printer=console.print)
    engine = Engine(context(lab, demo), lab.provider, SshShell(remote), console)
    try:
        return action(engine)
    finally:
        remote.close()


def up(
    spec_file: str | None,
    out: str | None,
    provider: str | None,
    demo: bool,
    validate: bool = True,
    until: str | None = None,
) -> dict[str, float]:
    if until is not None:
        phase_module(until)  # an unknown name is a usage error (exit 2) before anything runs
    lab = open_lab(spec_file, out, provider)
    _render_and_validate(lab, validate)
    started = time.monotonic()
    console.rule(f"nodes ({lab.provider.name})")
    state = LabState.load(lab.build)
    state.provider = lab.provider.name  # before the nodes: a failed up is destroyed right
    state.save(lab.build)
    lab.provider.up()
    if FIRST_CHECKPOINT not in lab.provider.snapshot_list():
        lab.provider.snapshot_save(FIRST_CHECKPOINT)
    timings = {"nodes": time.monotonic() - started}
    timings |= _run_engine(lambda engine: engine.up(until=until), lab, demo)
    if until is not None:
        console.print(f"lab {lab.spec.name}: phases up to {until} done (stopped there: --until)")
        return timings
    console.print(
        f"[bold green]lab {lab.spec.name} is up[/bold green]: registry behind "
        f"{lab.lb_kind} at {_front_url(lab.spec)}"
        + (f" (log in as {PUSH_USER} or {READ_USER})" if lab.spec.registry.tls else "")
    )
    return timings


def phase(
    name: str,
    spec_file: str | None,
    out: str | None,
    *,
    restore: bool,
    check: bool,
    dry_run: bool,
    explain: bool,
    demo: bool,
    reset: bool = False,
) -> bool:
    phase_module(name)  # an unknown name is a usage error first
    chosen = [flag for flag, on in (("--reset", reset), ("--check", check),
              ("--explain", explain), ("--dry-run", dry_run)) if on]  # fmt: skip
    if len(chosen) > 1:
        raise UsageError(f"{' and '.join(chosen)} do not go together: choose one")
    if explain or dry_run:
        _show_offline(name, spec_file, out, demo, explain=explain)
        return True
    lab = open_running_lab(spec_file, out)
    if reset:
        _run_engine(lambda engine: engine.reset(name), lab, demo)
        for line in next_steps_lines(guide(name, context(lab, demo))):
            console.print(line, markup=False, soft_wrap=True)
        return True
    if check:
        started = time.monotonic()
        results = _run_engine(lambda engine: engine.check_only(name), lab, demo)
        passed = all(r.passed for r in results)
        verdict = "passed" if passed else "failed"
        console.print(f"phase {name}: checks {verdict} in {time.monotonic() - started:.1f} s")
        return passed
    render(lab.spec, lab.build, lab.provider.capabilities)
    _run_engine(lambda engine: engine.replay(name, restore=restore), lab, demo)
    return True


def _show_offline(
    name: str, spec_file: str | None, out: str | None, demo: bool, *, explain: bool
) -> None:
    """--explain (for a trainee) or --dry-run (the kit's exact commands); runs nothing."""
    module = phase_module(name)
    lab = open_lab(spec_file, out, None)
    console.rule(f"phase {name}: {module.TITLE}")
    render(lab.spec, lab.build, lab.provider.capabilities)
    if explain:
        lines = explain_lines(guide(name, context(lab, demo)))
    else:
        console.print(module.EXPLAIN)
        engine = Engine(context(lab, demo), lab.provider, OfflineShell(_login_users(lab)), console)
        lines = engine.dry_run(name)
    for line in lines:
        console.print(line, markup=False, soft_wrap=True)


def ssh(node: str, command: Sequence[str], spec_file: str | None, out: str | None) -> None:
    """A shell (or one command) on ``node`` through the system ssh client; does not return."""
    from lab.ssh import exec_ssh, pick_node

    lab = open_running_lab(spec_file, out)
    access = pick_node(lab.provider.nodes(), node)
    exec_ssh(access, known_hosts_file(lab.build), command)


def _login_users(lab: Lab) -> dict[str, str]:
    try:
        return {n.name: n.user for n in lab.provider.nodes()}
    except Exception:  # VMs not up: their login user is the spec's
        return {n.name: lab.spec.user for n in lab.spec.nodes}


def phase_progress(record: PhaseRecord | None) -> str:
    """A phase's progress in a trainee's words."""
    if record is None:
        return "not done"
    if record.status == RESET:
        shown = "your turn (reset)"
    elif record.status == "passed":
        shown = "done by hand, graded" if record.by == TRAINEE else "done by the kit"
    else:
        who = "by hand" if record.by == TRAINEE else "by the kit"
        shown = f"failed {who}: {len(record.failed_checks)} check(s)"
    return shown + (" (stale: an earlier phase was redone)" if record.stale else "")


def status_data(spec: LabSpec, state: LabState) -> dict[str, object]:
    """lab.status --json: every phase, in order, with its progress and last attempt."""
    phases: dict[str, object] = {}
    for name in PHASES:
        record = state.phases.get(name)
        phases[name] = {
            "progress": phase_progress(record),
            "status": record.status if record else None,
            "by": record.by if record else None,
            "last_attempt": (record.at or None) if record else None,
            "seconds": record.seconds if record else None,
            "checkpoint": record.checkpoint if record else None,
            "stale": record.stale if record else False,
            "failed_checks": list(record.failed_checks) if record else [],
        }
    return {"lab": spec.name, "provider": state.provider, "order": list(PHASES), "phases": phases}


def status(spec_file: str | None, out: str | None, as_json: bool = False) -> None:
    spec, build = load(spec_file, out)
    state = LabState.load(build)
    if as_json:
        print(json.dumps(status_data(spec, state), indent=2, sort_keys=True))
        return
    table = Table(title=f"lab {spec.name} ({state.provider or 'not up'})")
    for column in ("phase", "progress", "last attempt (UTC)", "seconds", "failed checks"):
        table.add_column(column)
    for name in PHASES:
        record = state.phases.get(name)
        if record is None:
            table.add_row(name, phase_progress(None), "", "", "")
            continue
        table.add_row(
            name,
            phase_progress(record),
            record.at.replace("T", " ").rstrip("Z"),
            f"{record.seconds:.1f}",
            "; ".join(record.failed_checks),
        )
    console.print(table)
    if state.provider:
        provider = make_provider(state.provider, spec, build, say=console.print)
        for node, node_state in provider.status().items():
            console.print(f"{node}: {node_state}")


def handout(spec_file: str | None, out: str | None, fmt: str, handout_dir: str | None) -> Path:
    """Write the trainee's workbook (Markdown + figure, or one HTML file); say where."""
    from lab.handout import FORMATS, workbook, write_handout

    if fmt not in FORMATS:
        raise UsageError(f"no handout format {fmt!r}; formats: {', '.join(FORMATS)}")
    lab = open_lab(spec_file, out, None)
    render(lab.spec, lab.build, lab.provider.capabilities)
    book = workbook(context(lab), LabState.load(lab.build), phase_progress)
    target = Path(handout_dir).resolve() if handout_dir else lab.build / "handout"
    path = write_handout(book, lab.spec, lab.lb_kind, fmt, target)
    console.print(f"workbook written: {path}")
    return path


def destroy(spec_file: str | None, out: str | None, provider: str | None) -> None:
    spec, build = load(spec_file, out)
    name = provider or LabState.load(build).provider
    if name is None:
        _destroy_host_side(spec, build)
        return
    make_provider(name, spec, build, say=console.print).destroy()
    (build / "state.json").unlink(missing_ok=True)
    known_hosts_file(build).unlink(missing_ok=True)
    console.print(f"lab {spec.name} destroyed ({name})")


def _destroy_host_side(spec: LabSpec, build: Path) -> None:
    host = LabHost(spec, build)
    if not (host.run_dir.exists() or host.bridge.exists()):
        console.print(f"lab {spec.name} was never brought up here: nothing to destroy")
        return
    host.teardown()
    console.print(f"lab {spec.name}: its bridge and mirror removed (no nodes were recorded)")


def images(spec_file: str | None, out: str | None, load_archive: str | None) -> None:
    from lab.images import images_task

    spec, build = load(spec_file, out)
    images_task(spec, build, load=load_archive)


def box(spec_file: str | None, out: str | None, remove: bool) -> None:
    from lab.providers.libvirt.box import box_task

    spec, build = load(spec_file, out)
    box_task(spec, build, remove=remove)


def render_only(spec_file: str | None, out: str | None) -> None:
    spec, build = load(spec_file, out)
    result = render(spec, build)
    print(f"rendered {len(result.files)} files into {result.build}")


def validate_only(spec_file: str | None, out: str | None) -> None:
    from lab.validate import print_results
    from lab.validate import validate as validate_build

    spec, build = load(spec_file, out)
    if not (build / ".rendered").exists():
        raise UsageError(f"{build} has not been rendered yet: run `inv lab.render` first")
    if not print_results(validate_build(build, spec)):
        raise LabError("some files did not validate (see the table above)")


def _drill_access(lab: Lab):  # noqa: ANN202 (the drills package is imported lazily)
    """The drills' way in when the registries use TLS: the lab CA and the push account."""
    from lab.drills.load import Access
    from lab.secrets import PUSH_USER

    if not lab.spec.registry.tls:
        return None
    secrets = ensure_secrets(lab.build)
    return Access(secrets.file("ca.crt"), PUSH_USER, secrets.registry.push_password)


def drill(
    name: str,
    spec_file: str | None,
    out: str | None,
    *,
    node: str | None,
    seconds: float,
    json_file: str | None,
) -> bool:
    """Run one drill (or all, healing in between); True when every promise was kept."""
    import json

    from lab.drills import DRILLS, layout_lessons, summary_table
    from lab.drills.faults import DrillLab
    from lab.drills.runner import DrillOptions, DrillRun

    names = list(DRILLS) if name == "all" else [name]
    if name != "all" and name not in DRILLS:
        raise UsageError(f"no drill {name!r}; drills: {', '.join(DRILLS)}, all")
    if seconds <= 0 or seconds > 600:
        raise UsageError("--seconds must be between 1 and 600")
    lab = open_running_lab(spec_file, out)
    spec = lab.spec
    remote = Remote(lab.provider.nodes(), known_hosts_file(lab.build), printer=None)
    runner = DrillRun(
        DrillLab(spec, lab.provider, remote, lab.lb_kind),
        front=f"{spec.front_address}:{spec.loadbalancer.port}",
        registries=[f"{n.ip}:{spec.registry.port}" for n in spec.nodes],
        broken_file=lab.build / "drills" / "in-force.json",
        say=console.print,
        access=_drill_access(lab),
    )
    options = DrillOptions(seconds=seconds, out_dir=lab.build / "drills")
    verdicts = []
    try:
        for drill_name in names:
            console.rule(f"drill {drill_name}")
            verdicts.append(runner.run(drill_name, node, options))
            _print_verdict(verdicts[-1])
    except KeyboardInterrupt:
        # The fault was healed on the way out (a failed heal raises LabError instead).
        raise LabError("drill interrupted: nothing it broke is left broken", 130) from None
    finally:
        remote.close()
        if verdicts:
            console.print(summary_table(verdicts))
    for lesson in layout_lessons(spec):
        console.print(f"lesson: {lesson}")
    console.print(f"timelines: {options.out_dir}/<drill>.png, numbers in <drill>.json")
    if json_file:
        Path(json_file).write_text(json.dumps([v.as_dict() for v in verdicts], indent=1))
    return all(not v.broken for v in verdicts)


def _print_verdict(verdict: Verdict) -> None:
    for text, kept in verdict.promises:
        mark = "[green]kept[/green]" if kept else "[red]BROKEN[/red]"
        console.print(f"  promise {mark}: {text}")
    for lesson in verdict.lessons:
        console.print(f"  lesson: {lesson}")
    for lost in verdict.numbers.lost[:10]:
        console.print(f"  lost: {lost}", markup=False)
