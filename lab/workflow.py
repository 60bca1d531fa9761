"""The user's verbs — up, phase, status, destroy — composed from spec, render,
validate, a provider and the engine. tasks.py calls these and nothing else."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lab.cli import LabError
from lab.engine import FIRST_CHECKPOINT, ChecksFailed, Engine, PhaseFailed, SshShell, fail_line
from lab.paths import DEFAULT_SPEC, build_dir
from lab.phases import PHASES, phase_module
from lab.phases.context import PhaseContext
from lab.providers.base import Provider
from lab.remote import Remote, known_hosts_file
from lab.render import render
from lab.secrets import ensure_secrets
from lab.spec import LabSpec, load_spec
from lab.state import LabState

PROVIDERS = ("vagrant", "libvirt", "local")
console = Console(highlight=False)


@dataclass
class Lab:
    spec: LabSpec
    build: Path
    provider: Provider
    lb_kind: str


def make_provider(name: str, spec: LabSpec, build: Path) -> Provider:
    if name == "local":
        from lab.providers.local import LocalProvider

        return LocalProvider(spec, build)
    if name == "vagrant":
        from lab.providers.vagrant import VagrantProvider

        return VagrantProvider(spec, build)
    if name == "libvirt":
        # Vagrant with vagrant-libvirt instead of VirtualBox (a VagrantProvider subclass)
        from lab.providers.vagrant_libvirt import LibvirtProvider

        return LibvirtProvider(spec, build, say=console.print)
    raise LabError(f"unknown provider {name!r}; choose one of: {', '.join(PROVIDERS)}")


def _provider_name(build: Path, wanted: str | None) -> str:
    recorded = LabState.load(build).provider
    if wanted and recorded and wanted != recorded:
        raise LabError(
            f"this lab was brought up with --provider {recorded}; "
            f"run `inv lab.destroy` before switching to {wanted}"
        )
    return wanted or recorded or "vagrant"


def open_lab(spec_file: str | None, out: str | None, provider: str | None) -> Lab:
    """Load the spec and adapt it to what the provider's nodes can run."""
    spec = load_spec(spec_file or DEFAULT_SPEC)
    build = build_dir(spec.name, out)
    name = _provider_name(build, provider)
    chosen = make_provider(name, spec, build)
    adapted, lb_kind = adapt_to_provider(spec, chosen)
    return Lab(adapted, build, chosen, lb_kind)


def adapt_to_provider(spec: LabSpec, provider: Provider) -> tuple[LabSpec, str]:
    """Images the nodes cannot have are replaced by the provider's stand-ins."""
    substitutes = getattr(provider, "image_substitutes", None)
    if substitutes is None:
        return spec, spec.loadbalancer.kind
    minio_image, lb_kind = substitutes()
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


def _engine(lab: Lab, demo: bool = False) -> tuple[Engine, Remote]:
    remote = Remote(lab.provider.nodes(), known_hosts_file(lab.build), printer=console.print)
    return Engine(context(lab, demo), lab.provider, SshShell(remote), console), remote


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
    engine, remote = _engine(lab, demo)
    try:
        return action(engine)
    except PhaseFailed as exc:
        raise LabError(str(exc)) from None
    except ChecksFailed as exc:
        for line in map(fail_line, exc.failures):
            console.print(line)
        raise LabError(f"phase {exc.phase}: checks failed") from None
    except LookupError as exc:
        raise LabError(str(exc.args[0])) from None
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
    lab.provider.up()
    state = LabState.load(lab.build)
    state.provider = lab.provider.name
    state.save(lab.build)
    if FIRST_CHECKPOINT not in lab.provider.snapshot_list():
        lab.provider.snapshot_save(FIRST_CHECKPOINT)
    timings = {"nodes": time.monotonic() - started}
    timings |= _run_engine(lambda engine: engine.up(until=until), lab, demo)
    if until is not None:
        console.print(f"lab {lab.spec.name}: phases up to {until} done (stopped there: --until)")
        return timings
    console.print(
        f"[bold green]lab {lab.spec.name} is up[/bold green]: registry behind "
        f"{lab.lb_kind} at http://{lab.spec.lb_node.ip}:{lab.spec.loadbalancer.port}"
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
    lab = open_lab(spec_file, out, None)
    if explain or dry_run:
        console.rule(f"phase {name}: {module.TITLE}")
        console.print(module.EXPLAIN)
    if dry_run or explain:
        render(lab.spec, lab.build, lab.provider.capabilities)
        engine = Engine(context(lab, demo), lab.provider, _OfflineShell(lab), console)
        for line in engine.dry_run(name):
            console.print(line, markup=False, soft_wrap=True)
        return True
    if check:
        results = _run_engine(lambda engine: engine.check_only(name), lab, demo)
        failures = [r for r in results if not r.passed]
        for line in map(fail_line, failures):
            console.print(line, markup=False)
        return not failures
    render(lab.spec, lab.build, lab.provider.capabilities)
    _run_engine(lambda engine: engine.replay(name, restore=restore), lab, demo)
    return True


class _OfflineShell:
    """For --dry-run: knows the login users, runs nothing."""

    def __init__(self, lab: Lab):
        try:
            self.users = {n.name: n.user for n in lab.provider.nodes()}
        except Exception:  # VMs not up: their login user is the spec's
            self.users = {n.name: lab.spec.user for n in lab.spec.nodes}

    def run(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        raise LabError("--dry-run runs nothing")

    def upload(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        raise LabError("--dry-run uploads nothing")

    def user(self, node: str) -> str:
        return self.users[node]


def status(spec_file: str | None, out: str | None) -> None:
    spec = load_spec(spec_file or DEFAULT_SPEC)
    build = build_dir(spec.name, out)
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
        provider = make_provider(state.provider, spec, build)
        for node, node_state in provider.status().items():
            console.print(f"{node}: {node_state}")


def destroy(spec_file: str | None, out: str | None, provider: str | None) -> None:
    spec = load_spec(spec_file or DEFAULT_SPEC)
    build = build_dir(spec.name, out)
    name = provider or LabState.load(build).provider or "local"
    make_provider(name, spec, build).destroy()
    (build / "state.json").unlink(missing_ok=True)
    known_hosts_file(build).unlink(missing_ok=True)
    console.print(f"lab {spec.name} destroyed ({name})")
