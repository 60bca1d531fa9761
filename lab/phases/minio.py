"""Phase minio: distributed MinIO as a swarm stack, keys as docker secrets."""

from __future__ import annotations

from lab.phases.common import http_code, sh
from lab.phases.context import PhaseContext
from lab.plan import Check, Step, Upload

TITLE = "distributed MinIO on the shared directory"
EXPLAIN = """\
MinIO needs at least four instances to run distributed, so the stack runs four
(minio1..minio4) on three nodes, each on its own published port and its own
sub-directory of the NFS-backed /mnt/docker_reg/minio. The access and secret
keys become docker secrets (never in the stack file); MinIO reads them through
MINIO_ROOT_USER_FILE / MINIO_ROOT_PASSWORD_FILE. Placement constraints on the
labels from the previous phase keep every instance on its node."""

SECRETS = {"access_key": "minio_access_key", "secret_key": "minio_secret_key"}


def stack_file(ctx: PhaseContext) -> str:
    return ctx.staged(ctx.leader, "minio.yaml")


def plan(ctx: PhaseContext) -> list[Step]:
    spec = ctx.spec
    data_dirs = sh(*(inst.data for inst in spec.minio.instances))
    stack = sh(spec.minio.stack)
    steps = [
        Step(
            "create the instances' data directories on the shared directory",
            (ctx.leader,),
            f"{{sudo}}mkdir -p {data_dirs}",
        )
    ]
    for secret, source in SECRETS.items():
        steps.append(
            Step(
                f"create the docker secret {secret}",
                (ctx.leader,),
                f"docker secret create {secret} -",
                guard=f"docker secret inspect {secret} >/dev/null 2>&1",
                stdin_file=ctx.secrets.file(source),
            )
        )
    steps += [
        Step(
            f"deploy the stack {spec.minio.stack}",
            (ctx.leader,),
            f"docker stack deploy -c {sh(stack_file(ctx))} {stack}",
            uploads=(Upload(ctx.file("stacks/minio.yaml"), stack_file(ctx)),),
        ),
        Step(
            "wait until every instance runs",
            (ctx.leader,),
            f"test -z \"$(docker stack services {stack} --format '{{{{.Replicas}}}}' "
            "| grep -v '^1/1')\"",
            retry_for=180,
        ),
    ]
    return steps


def checks(ctx: PhaseContext) -> list[Check]:
    spec = ctx.spec
    result = []
    for inst in spec.minio.instances:
        service = f"{spec.minio.stack}_{inst.name}"
        result.append(
            Check(
                f"{service} runs on {inst.node}",
                f"{inst.node} Running",
                ctx.leader,
                f"docker service ps {sh(service)} --filter desired-state=running "
                "--format '{{.Node}} {{.CurrentState}}' | cut -d' ' -f1,2",
                settle_for=60,
            )
        )
        result.append(
            Check(
                f"{inst.name} answers /minio/health/cluster",
                "200",
                inst.node,
                http_code(f"http://{ctx.ip(inst.node)}:{inst.port}/minio/health/cluster"),
                settle_for=60,
            )
        )
    return result
