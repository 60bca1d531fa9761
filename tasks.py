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
        "demo": "also run the tutorial's busybox demo in the swarm phase",
        "skip_validate": "do not run the validators before bringing the lab up",
        "until": "stop after this phase (e.g. labels); a later `inv lab.up` goes on from there",
    }
)
@cli.friendly_errors
def up(c, spec=None, out=None, provider=None, demo=False, skip_validate=False, until=None):
    """Render, validate, make the nodes, then run every phase with a checkpoint after each."""
    from lab import workflow

    workflow.up(spec, out, provider, demo, validate=not skip_validate, until=until)


@task(help={**SPEC_HELP})
@cli.friendly_errors
def status(c, spec=None, out=None):
    """Show which phases passed, their times and checkpoints, and the nodes' state."""
    from lab import workflow

    workflow.status(spec, out)


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
        "check": "only run the phase's checks (exit 1 with FAIL: lines if any fails)",
        "dry_run": "print the exact commands per node, run nothing",
        "explain": "say what the phase does and show its commands",
        "demo": "with swarm: also run the busybox demo",
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
):
    """Roll the lab back to the checkpoint before a phase and replay it."""
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
    )
    if not ok:
        raise cli.LabError("checks failed")


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


lab = Collection("lab", render, validate, up, status, destroy, images, box, drill)
ns = Collection(lab, phase)
