"""Invoke entry point: `inv --list`. Thin by design: every task calls into lab/."""

from invoke import Collection, task

from lab import cli

SPEC_HELP = {
    "spec": "lab file (default: lab.yaml)",
    "out": "build directory (default: build/<lab>/)",
}
PROVIDER_HELP = (
    "vagrant (VirtualBox VMs, the default), libvirt (Vagrant VMs under vagrant-libvirt/QEMU, "
    "box from `inv lab.box`) or local (network namespaces on this host)"
)


@task(help=SPEC_HELP)
@cli.friendly_errors
def render(c, spec=None, out=None):
    """Render the Vagrantfile, Ignition/cloud-config, stacks and configs into build/<lab>/."""
    from lab.render import render as render_lab

    lab_spec, build = cli.spec_and_build(spec, out)
    result = render_lab(lab_spec, build)
    print(f"rendered {len(result.files)} files into {result.build}")


@task(help=SPEC_HELP)
@cli.friendly_errors
def validate(c, spec=None, out=None):
    """Check every rendered file with its real consumer (vagrant, ignition-validate, ...)."""
    from lab.validate import print_results
    from lab.validate import validate as validate_build

    lab_spec, build = cli.spec_and_build(spec, out)
    if not (build / ".rendered").exists():
        raise cli.LabError(f"{build} has not been rendered yet: run `inv lab.render` first")
    if not print_results(validate_build(build, lab_spec)):
        raise cli.LabError("some files did not validate (see the table above)")


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


@task(help={**SPEC_HELP, "provider": "override the provider recorded for this lab"})
@cli.friendly_errors
def destroy(c, spec=None, out=None, provider=None):
    """Remove the lab's nodes and everything they left (safe to run twice)."""
    from lab import workflow

    workflow.destroy(spec, out, provider)


@task(
    help={
        "name": "the phase: swarm, labels, minio, bucket, redis, registry, fleet, traefik, verify",
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
    from lab.images import images_task

    lab_spec, build = cli.spec_and_build(spec, out)
    images_task(lab_spec, build, load=load)


@task(
    help={
        **SPEC_HELP,
        "remove": "remove the box from Vagrant and its volume from the libvirt pool",
    }
)
@cli.friendly_errors
def box(c, spec=None, out=None, remove=False):
    """Build (cached) and register the Debian+Docker Vagrant box for libvirt, with the
    lab's images in it (built into the lab's mirror first), or remove it."""
    from lab.box import box_task

    lab_spec, build = cli.spec_and_build(spec, out)
    box_task(lab_spec, build, remove=remove)


lab = Collection("lab", render, validate, up, status, destroy, images, box)
ns = Collection(lab, phase)
