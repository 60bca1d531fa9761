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
