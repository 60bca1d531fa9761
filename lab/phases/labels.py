"""Phase labels: node labels that pin each MinIO instance to its node."""

from __future__ import annotations

import json

from lab.phases.common import sh
from lab.phases.context import PhaseContext
from lab.plan import Check, Step, TraineeCommand

TITLE = "node labels that place the MinIO instances"
TUTORIAL = "Installing Minio Object Store: labels as placement constraints"
EXPLAIN = """\
Each MinIO instance keeps its data on one node, so the stack pins it there with
a placement constraint `node.labels.<instance> == true`. This phase adds those
labels as lab.yaml places the instances (one node takes two of the four)."""


def _label_of(instance: str, node: str) -> str:
    template = f"{{{{index .Spec.Labels {json.dumps(instance)}}}}}"  # a Go string literal
    return f"docker node inspect -f {sh(template)} {sh(node)}"


def plan(ctx: PhaseContext) -> list[Step]:
    return [
        Step(
            f"label {inst.node} for {inst.name}",
            (ctx.leader,),
            f"docker node update --label-add {sh(f'{inst.name}=true', inst.node)}",
            guard=f"{_label_of(inst.name, inst.node)} | grep -qx true",
        )
        for inst in ctx.spec.minio.instances
    ]


def checks(ctx: PhaseContext) -> list[Check]:
    return [
        Check(
            f"{inst.node} carries label {inst.name}=true",
            "true",
            ctx.leader,
            _label_of(inst.name, inst.node),
            hint=_show_labels(inst.node),
        )
        for inst in ctx.spec.minio.instances
    ]


def _show_labels(node: str) -> str:
    return f"docker node inspect --format '{{{{ .Spec.Labels }}}}' {node}"


def trainee(ctx: PhaseContext) -> list[TraineeCommand]:
    leader = ctx.leader
    return [
        *(
            TraineeCommand(
                "the labels before: empty unless you added some", _show_labels(n), leader
            )
            for n in ctx.node_names
        ),
        *(
            TraineeCommand(
                f"pin {inst.name} to {inst.node}",
                f"docker node update --label-add {inst.name}=true {inst.node}",
                leader,
            )
            for inst in ctx.spec.minio.instances
        ),
        *(TraineeCommand("the labels after", _show_labels(n), leader) for n in ctx.node_names),
    ]


def differences(ctx: PhaseContext) -> list[str]:
    return [
        "labels come before the MinIO secrets here (the tutorial adds them after): the "
        "order does not matter to swarm, and the stack needs both",
    ]
