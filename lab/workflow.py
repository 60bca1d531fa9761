"""The user's verbs — up, phase, status, destroy, images, box — composed from spec,
render, validate, a provider and the engine. tasks.py calls these and nothing else.

Which provider a lab uses is one rule: ``--provider`` if given, else the one recorded
in ``build/<lab>/state.json`` (recorded when ``up`` starts, so a failed or killed
``up`` is still destroyed with the right provider), else ``vagrant`` for ``up``;
``destroy`` with nothing recorded removes only what ``lab.images`` / ``lab.box``
left on the host (the lab's bridge and mirror).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from lab.engine import FIRST_CHECKPOINT, ChecksFailed, Engine, OfflineShell, SshShell
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
from lab.secrets import ensure_secrets
from lab.spec import LabSpec, load_spec
from lab.state import LabState

console = make_console()


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
    """Images the nodes cannot have are replaced by the provider's stand-ins."""
    minio_image, lb_kind = provider.image_substitutes()
    if minio_image == spec.minio.image:
        return spec, lb_kind
    minio = spec.minio.model_copy(update={"image": minio_image})
    return spec.model_copy(update={"minio": minio}), lb_kind


def context(lab: Lab, demo: bool = False) -> PhaseContext:
    return PhaseContext(
        spec=lab.spec,
        build=lab.build,
        caps=lab.provider.capabilities,
        secrets=ensure_secrets(lab.build),
        lb_kind=lab.lb_kind,
        demo=demo,
    )


def _render_and_validate(lab: Lab, validate: bool) -> None:
    caps = lab.provider.capabilities
    if not caps.ipvs:
        console.print("no IPVS on these nodes: publishing with mode: host, endpoint_mode: dnsrr")
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
        f"{lab.lb_kind} at http://{lab.spec.front_address}:{lab.spec.loadbalancer.port}"
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
) -> bool:
    module = phase_module(name)
    if explain or dry_run:
        lab = open_lab(spec_file, out, None)
        console.rule(f"phase {name}: {module.TITLE}")
        console.print(module.EXPLAIN)
        render(lab.spec, lab.build, lab.provider.capabilities)
        engine = Engine(context(lab, demo), lab.provider, OfflineShell(_login_users(lab)), console)
        for line in engine.dry_run(name):
            console.print(line, markup=False, soft_wrap=True)
        return True
    lab = open_running_lab(spec_file, out)
    if check:
        results = _run_engine(lambda engine: engine.check_only(name), lab, demo)
        failures = [r for r in results if not r.passed]
        for line in ChecksFailed(name, failures).lines()[:-1]:
            console.print(line, markup=False)
        return not failures
    render(lab.spec, lab.build, lab.provider.capabilities)
    _run_engine(lambda engine: engine.replay(name, restore=restore), lab, demo)
    return True


def _login_users(lab: Lab) -> dict[str, str]:
    try:
        return {n.name: n.user for n in lab.provider.nodes()}
    except Exception:  # VMs not up: their login user is the spec's
        return {n.name: lab.spec.user for n in lab.spec.nodes}


def status(spec_file: str | None, out: str | None) -> None:
    spec, build = load(spec_file, out)
    state = LabState.load(build)
    table = Table(title=f"lab {spec.name} ({state.provider or 'not up'})")
    for column in ("phase", "status", "seconds", "checkpoint"):
        table.add_column(column)
    for name in PHASES:
        record = state.phases.get(name)
        if record is None:
            table.add_row(name, "-", "", "")
            continue
        shown = "stale" if record.stale else record.status
        table.add_row(name, shown, f"{record.seconds:.1f}", record.checkpoint or "")
    console.print(table)
    if state.provider:
        provider = make_provider(state.provider, spec, build, say=console.print)
        for node, node_state in provider.status().items():
            console.print(f"{node}: {node_state}")


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
    from lab.render import render as render_lab

    spec, build = load(spec_file, out)
    result = render_lab(spec, build)
    print(f"rendered {len(result.files)} files into {result.build}")


def validate_only(spec_file: str | None, out: str | None) -> None:
    from lab.validate import print_results
    from lab.validate import validate as validate_build

    spec, build = load(spec_file, out)
    if not (build / ".rendered").exists():
        raise UsageError(f"{build} has not been rendered yet: run `inv lab.render` first")
    if not print_results(validate_build(build, spec)):
        raise LabError("some files did not validate (see the table above)")


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
    )
    options = DrillOptions(seconds=seconds, out_dir=lab.build / "drills")
    verdicts = []
    try:
        for drill_name in names:
            console.rule(f"drill {drill_name}")
            verdicts.append(runner.run(drill_name, node, options))
            _print_verdict(verdicts[-1])
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


def _print_verdict(verdict) -> None:  # noqa: ANN001
    for text, kept in verdict.promises:
        mark = "[green]kept[/green]" if kept else "[red]BROKEN[/red]"
        console.print(f"  promise {mark}: {text}")
    for lesson in verdict.lessons:
        console.print(f"  lesson: {lesson}")
    for lost in verdict.numbers.lost[:10]:
        console.print(f"  lost: {lost}", markup=False)
