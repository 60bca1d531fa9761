"""Invoke entry point: `inv --list`. Thin by design: every task calls into lab/."""

from invoke import Collection, task

from lab import cli, providers
from lab.phases import PHASES

SPEC_HELP = {
    "spec": "lab file (default: lab.yaml)",
    "out": "build directory (default: build/<lab>/)",
}
PROVIDER_HELP = (
    f"{providers.help_text()}. Default: the provider recorded when this lab was brought up, "
    f"else {providers.DEFAULT_PROVIDER}"
)


@task(help=SPEC_HELP)
@cli.friendly_errors
def render(c, spec=None, out=None):
    """Render the Vagrantfile, Ignition/cloud-config, stacks and configs into build/<lab>/."""
    from lab import workflow

    workflow.render_only(spec, out)


@task(help=SPEC_HELP)
@cli.friendly_errors
def validate(c, spec=None, out=None):
    """Check every rendered file with its real consumer (vagrant, ignition-validate, ...)."""
    from lab import workflow

    workflow.validate_only(spec, out)


@task(
    help={
        **SPEC_HELP,
        "provider": PROVIDER_HELP,
        "demo": "also run the tutorial's nginx service and busybox examples (swarm phase)",
        "skip_validate": "do not run the validators before bringing the lab up",
        "until": "stop after this phase (e.g. labels); a later `inv lab.up` goes on from there",
    }
)
@cli.friendly_errors
def up(c, spec=None, out=None, provider=None, demo=False, skip_validate=False, until=None):
    """Render, validate, make the nodes, then run every phase with a checkpoint after each."""
    from lab import workflow

    workflow.up(spec, out, provider, demo, validate=not skip_validate, until=until)


@task(help={**SPEC_HELP, "json": "print the progress as JSON (for scripts)"})
@cli.friendly_errors
def status(c, spec=None, out=None, json=False):
    """Per phase: done by the kit, done by hand and graded, or failed; the last attempt."""
    from lab import workflow

    workflow.status(spec, out, as_json=json)


@task(
    help={
        **SPEC_HELP,
        "provider": "the lab's provider, if state.json does not record it; with neither, "
        "only the bridge and mirror of lab.images/lab.box are removed",
    }
)
@cli.friendly_errors
def destroy(c, spec=None, out=None, provider=None):
    """Remove the lab's nodes and everything they left (safe to run twice)."""
    from lab import workflow

    workflow.destroy(spec, out, provider)


@task(
    help={
        "name": f"the phase: {', '.join(PHASES)}",
        **SPEC_HELP,
        "no_restore": "re-run in place instead of restoring the checkpoint before the phase",
        "check": "only grade the lab as it is (exit 1 with FAIL: lines and hints if any fails)",
        "reset": "restore the checkpoint before the phase and stop: do it by hand, then --check",
        "dry_run": "print the kit's exact commands per node, run nothing",
        "explain": "the tutorial section, why, the commands you type, what done looks like",
        "demo": "with swarm: also run the tutorial's nginx service and busybox examples",
    }
)
@cli.friendly_errors
def phase(
    c,
    name,
    spec=None,
    out=None,
    no_restore=False,
    check=False,
    dry_run=False,
    explain=False,
    demo=False,
    reset=False,
):
    """Roll the lab back to the checkpoint before a phase and replay it (the solution).

    With --reset the lab stops just before the phase for a trainee to do it by hand."""
    if name in cli.HELP_FLAGS:  # `inv phase --help`: Invoke gave the flag to NAME
        cli.show_task_help("phase")
        return
    from lab import workflow

    ok = workflow.phase(
        name,
        spec,
        out,
        restore=not no_restore,
        check=check,
        dry_run=dry_run,
        explain=explain,
        demo=demo,
        reset=reset,
    )
    if not ok:
        raise cli.LabError(f"phase {name}: checks failed (see the FAIL lines above)")


@task(help={**SPEC_HELP, "load": "a `docker save` tarball to put into the mirror instead"})
@cli.friendly_errors
def images(c, spec=None, out=None, load=None):
    """Build the offline images (Debian/PyPI packages) into the lab's registry mirror."""
    from lab import workflow

    workflow.images(spec, out, load)


@task(
    help={
        **SPEC_HELP,
        "remove": "remove the box from Vagrant and its volume from the libvirt pool",
    }
)
@cli.friendly_errors
def box(c, spec=None, out=None, remove=False):
    """Build (cached) and register the libvirt provider's Debian+Docker box, or remove it.

    The lab's images are built into its mirror first and baked into the box."""
    from lab import workflow

    workflow.box(spec, out, remove)


@task(
    help={
        "node": "the node to log in to (e.g. coreos1)",
        **SPEC_HELP,
    }
)
@cli.friendly_errors
def ssh(c, node, spec=None, out=None):
    """A shell on NODE, or one command after `--`: `inv lab.ssh coreos1 -- docker node ls`.

    Uses the system ssh client with the lab's key and the lab's pinned known_hosts; the
    command goes to the node's shell as with plain ssh."""
    if node in cli.HELP_FLAGS:
        cli.show_task_help("lab.ssh")
        return
    from lab import workflow

    workflow.ssh(node, cli.remainder_argv(c.remainder), spec, out)


@task(
    help={
        **SPEC_HELP,
        "format": "md (Markdown + topology.png) or html (one self-contained file); default md",
        "out_dir": "where to write it (default: build/<lab>/handout/)",
    }
)
@cli.friendly_errors
def handout(c, spec=None, out=None, format="md", out_dir=None):  # noqa: A002 - the option's name
    """Write the trainee's workbook: per phase the tutorial section, why, the commands to
    type, what done looks like, the differences and the last run's real output."""
    from lab import workflow

    workflow.handout(spec, out, format, out_dir)



@task(
    help={
        "name": "registry, redis, storage, node, leader, lb, or all (each in turn, healed between)",
        **SPEC_HELP,
        "node": "the node to break (default: one the design promises to survive)",
        "seconds": "how long the fault lasts (default 20)",
        "json": "also write every drill's numbers and promises to this file",
    }
)
@cli.friendly_errors
def drill(c, name, spec=None, out=None, node=None, seconds=20, json=None):
    """Break one part of the running lab under load, heal it, and measure what it cost.

    Pulls and pushes run through the front address during the drill; the table says
    what failed and for how long, whether the design kept its promises (exit 1 if
    not), and what the layout cannot promise. Timelines: build/<lab>/drills/*.png."""
    if name in cli.HELP_FLAGS:
        cli.show_task_help("lab.drill")
        return
    from lab import workflow

    if not workflow.drill(name, spec, out, node=node, seconds=float(seconds), json_file=json):
        raise cli.LabError("a promise of the design was broken (see above)")


@task(
    iterable=["only"],
    help={
        "only": "run only this benchmark (repeatable); `python bench/run.py --list` lists them",
        "quick": "smaller samples, fewer phases and sizes (minutes instead of about half an hour)",
        "out": "where the JSON and PNG files go (default docs/perf/)",
    },
)
def bench(c, only=None, quick=False, out=None):
    """Run the benchmarks (bench/run.py, as root): JSON results and PNG plots in docs/perf/."""
    import subprocess
    import sys

    from lab.paths import REPO_ROOT

    argv = [sys.executable, str(REPO_ROOT / "bench" / "run.py")]
    argv += [f"--only={name}" for name in only or []]
    argv += ["--quick"] if quick else []
    argv += [f"--out={out}"] if out else []
    code = subprocess.run(argv, cwd=REPO_ROOT).returncode
    if code:
        sys.exit(code)


lab = Collection("lab", render, validate, up, status, destroy, images, box, ssh, handout, drill)
ns = Collection(lab, phase, bench)


# ------------------------------------------------------------------ a class of labs

CLASS_SPEC_HELP = {"spec": "the template lab file (default: lab.yaml); its name names the class"}


@task(
    name="up",
    auto_shortflags=False,
    help={
        "trainees": "how many trainees (1-40): labs <template>-1 ... <template>-N",
        **CLASS_SPEC_HELP,
        "provider": "local (a class runs on this one server)",
        "names": "a file of trainee names, one a line (a-z, 0-9, '-'), instead of numbers",
        "parallel": "labs brought up at once (1-8, default 2: one per core)",
        "pool": "the private network the labs' subnets are cut from (default 10.220.0.0/16)",
        "ssh_port": "the port of the class's SSH entry on this server (default 2222)",
        "until": "bring every lab up to this phase only",
    },
)
@cli.friendly_errors
def class_up(c, trainees=None, spec=None, provider="local", names=None, parallel=None,
             pool=None, ssh_port=None, until=None):  # fmt: skip
    """One lab per trainee from one template: own subnet, isolated, with a login each."""
    from lab.classroom import runner

    count = cli.int_option("--trainees", trainees) if trainees is not None else None
    parallel = cli.int_option("--parallel", parallel) if parallel is not None else 2
    port = cli.int_option("--ssh-port", ssh_port) if ssh_port is not None else 2222
    outcomes = runner.up(count, spec, provider, names, parallel, pool, port, until)
    if not all(o.ok for o in outcomes):
        raise cli.LabError("some labs did not come up (see above); the others are up")


@task(
    name="destroy",
    auto_shortflags=False,
    help={**CLASS_SPEC_HELP, "trainee": "only this trainee's lab"},
)
@cli.friendly_errors
def class_destroy(c, spec=None, trainee=None):
    """Remove one trainee's lab or the whole class, and everything they left."""
    from lab.classroom import runner

    runner.destroy(spec, trainee)


@task(
    name="status",
    auto_shortflags=False,
    help={
        **CLASS_SPEC_HELP,
        "json": "print the class as JSON (for scripts)",
        "watch": "refresh every --interval seconds (Ctrl-C ends it)",
        "interval": "seconds between two refreshes with --watch (2-300, default 10)",
        "page": "where to write the HTML page (default build/classes/<class>/status.html)",
    },
)
@cli.friendly_errors
def class_status(c, spec=None, json=False, watch=False, interval=None, page=None):
    """Every lab's phases (kit, graded, failing), last check and memory; an HTML page."""
    from lab.classroom import runner

    seconds = cli.float_option("--interval", interval) if interval is not None else 10.0
    runner.status(spec, json, watch, seconds, page)


@task(
    name="grade",
    auto_shortflags=False,
    help={"trainee": "whose lab", "phase": f"the phase: {', '.join(PHASES)}", **CLASS_SPEC_HELP},
)
@cli.friendly_errors
def class_grade(c, trainee, phase, spec=None):
    """Grade one trainee's phase (`inv phase PHASE --check` on their lab)."""
    from lab.classroom import runner

    if not runner.grade(spec, trainee, phase):
        raise cli.LabError(f"trainee {trainee}: phase {phase} failed its checks")


classroom = Collection("class")
for _task in (class_up, class_destroy, class_status, class_grade):
    classroom.add_task(_task)
ns.add_collection(classroom)
