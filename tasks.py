"""Invoke entry point: `inv --list`. Thin by design: every task calls into lab/."""

from invoke import Collection, task

from lab import cli
from lab.render import render as render_lab

SPEC_HELP = {
    "spec": "lab file (default: lab.yaml)",
    "out": "build directory (default: build/<lab>/)",
}


@task(help=SPEC_HELP)
@cli.friendly_errors
def render(c, spec=None, out=None):
    """Render the Vagrantfile, Ignition/cloud-config, stacks and configs into build/<lab>/."""
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


lab = Collection("lab", render, validate)
ns = Collection(lab)
