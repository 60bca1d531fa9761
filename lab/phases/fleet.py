"""Phase fleet: the registry as a host unit (fleet where it exists, else systemd)."""

from __future__ import annotations

import shutil
import subprocess

from lab.phases.common import http_code, registry_curl, registry_url, sh
from lab.phases.context import PhaseContext
from lab.plan import Check, Step, TraineeCommand, Upload

TITLE = "the registry as a host-level unit"
TUTORIAL = "Another way how to run Docker Registry (fleet unit registry.service)"
EXPLAIN = """\
The tutorial's other way to run the registry on CoreOS: a unit file,
registry.service, started on every node. On old CoreOS fleet did that with a
global unit ([X-Fleet] Global=true); where fleet is gone (Flatcar), the same
unit runs under systemd on each node. The unit takes over the container the
registry phase started, with the same config."""

UNIT = "registry.service"


def skip_reason(ctx: PhaseContext) -> str | None:
    if not ctx.caps.systemd:
        return "no systemd on local nodes"
    return None


def plan(ctx: PhaseContext) -> list[Step]:
    if ctx.caps.fleet:
        staged = ctx.staged(ctx.leader, UNIT)
        return [
            Step(
                "submit and start the global unit with fleetctl",
                (ctx.leader,),
                f"docker rm -f registry >/dev/null 2>&1; fleetctl submit {sh(staged)} "
                f"&& fleetctl start {UNIT}",
                uploads=(Upload(ctx.file(f"units/{UNIT}"), staged),),
                guard=f"fleetctl list-units --no-legend | grep -q '^{UNIT}.*running'",
            )
        ]
    staged = ctx.staged("{node}", UNIT)
    return [
        Step(
            "install and start the unit with systemd on every node",
            tuple(ctx.node_names),
            f"{{sudo}}install -m 0644 {staged} /etc/systemd/system/{UNIT} "
            "&& { docker rm -f registry >/dev/null 2>&1 || true; } "
            f"&& {{sudo}}systemctl daemon-reload && {{sudo}}systemctl enable --now {UNIT}",
            uploads=(Upload(ctx.file(f"units/systemd/{UNIT}"), staged),),
            guard=f"systemctl is-active --quiet {UNIT}",
        ),
        Step(
            "wait until every registry answers /v2/ again",
            tuple(ctx.node_names),
            f"{registry_curl(ctx)} -sf -m 5 "
            f"{registry_url(ctx, f'{{node_ip}}:{ctx.registry_port}')} >/dev/null",
            retry_for=120,
        ),
    ]


def verify_units(ctx: PhaseContext) -> str:
    """systemd-analyze verify on the rendered units, on the host."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        return "systemd-analyze not found: apt-get install systemd"
    units = [ctx.file(f"units/{UNIT}"), ctx.file(f"units/systemd/{UNIT}")]
    result = subprocess.run(
        [tool, "verify", *map(str, units)], capture_output=True, text=True, timeout=60
    )
    problems = [
        line for line in result.stderr.splitlines() if line.strip() and "X-Fleet" not in line
    ]
    return "verified" if result.returncode == 0 and not problems else "; ".join(problems)[:300]


def checks(ctx: PhaseContext) -> list[Check]:
    if not ctx.caps.systemd:
        return [
            Check(
                "the registry units pass systemd-analyze verify",
                "verified",
                probe=verify_units,
                hint=f"systemd-analyze verify {ctx.file('units/systemd/' + UNIT)}",
            )
        ]
    result = []
    for node in ctx.node_names:
        if ctx.caps.fleet:
            result.append(
                Check(
                    "fleet runs the unit",
                    "running",
                    node,
                    f"fleetctl list-units --no-legend | awk '/^{UNIT}/ {{print $4}}' | head -n 1",
                    hint="fleetctl list-units",
                )
            )
        else:
            result.append(
                Check(
                    f"{UNIT} is active on {node}",
                    "active",
                    node,
                    f"systemctl is-active {UNIT}",
                    hint=f"systemctl status {UNIT}; journalctl -u {UNIT} -n 20",
                )
            )
        own = registry_url(ctx, f"{ctx.ip(node)}:{ctx.registry_port}")
        result.append(
            Check(
                f"the registry on {node} answers /v2/",
                "200",
                node,
                http_code(own, registry_curl(ctx)),
                settle_for=30,
                hint=f"{registry_curl(ctx)} -i {own}",
            )
        )
    return result


def trainee(ctx: PhaseContext) -> list[TraineeCommand]:
    leader = ctx.leader
    if ctx.caps.fleet:
        return [
            TraineeCommand(
                "submit and start the global unit",
                f"fleetctl submit {UNIT} && fleetctl start {UNIT}",
                leader,
            ),
            TraineeCommand("it runs on every node", "fleetctl list-units", leader),
            TraineeCommand("read only: remove it", f"fleetctl destroy {UNIT}", leader, run=False),
        ]
    return [
        *(
            TraineeCommand(
                f"the unit (build/<lab>/units/systemd/{UNIT}, copied to the node) replaces the "
                "registry container with the same config; systemd starts it at boot"
                + ("" if ctx.caps.systemd else " (not on these nodes: no systemd)"),
                f"docker rm -f registry; cp {UNIT} /etc/systemd/system/ "
                f"&& systemctl daemon-reload && systemctl enable --now {UNIT}",
                node,
                run=ctx.caps.systemd,
            )
            for node in ctx.node_names
        ),
        TraineeCommand("it runs", f"systemctl status {UNIT}", leader, run=ctx.caps.systemd),
        TraineeCommand(
            "read only: remove it", f"systemctl disable --now {UNIT}", leader, run=False
        ),
    ]


def differences(ctx: PhaseContext) -> list[str]:
    diffs = ["fleet is gone from Flatcar: the same unit runs under systemd on every node"]
    if not ctx.caps.systemd:
        diffs.append(
            "these nodes run no systemd: the phase only verifies the rendered units "
            "(systemd-analyze verify) and the registry containers keep running"
        )
    return diffs
