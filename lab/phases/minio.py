"""Phase minio: distributed MinIO as a swarm stack, keys as docker secrets."""

from __future__ import annotations

from lab.phases.common import http_code, sh
from lab.phases.context import PhaseContext
from lab.plan import ABSENT, Check, Step, TraineeCommand, Upload

TITLE = "distributed MinIO on the shared directory"
TUTORIAL = "Installing Minio Object Store (keys, ports, directories, clock, stack, secrets, deploy)"
EXPLAIN = """\
MinIO needs at least four instances to run distributed, so the stack runs four
(minio1..minio4) on three nodes, each on its own published port and its own
sub-directory of the NFS-backed /mnt/docker_reg/minio. The access and secret
keys become docker secrets (never in the stack file); MinIO reads them through
MINIO_ROOT_USER_FILE / MINIO_ROOT_PASSWORD_FILE. Placement constraints on the
labels from the previous phase keep every instance on its node."""

SECRETS = {"access_key": "minio_access_key", "secret_key": "minio_secret_key"}
# What a trainee works with, in the login user's home on the first node: the stack
# file under the tutorial's name and the lab's keys (0600) to make the secrets from.
TRAINEE_DIR = "lab"
TRAINEE_STACK = f"{TRAINEE_DIR}/docker-compose-secrets.yaml"


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
    steps.append(
        Step(
            f"put the stack file and the keys in ~/{TRAINEE_DIR}/ on {ctx.leader} for trainees",
            (ctx.leader,),
            f"chmod 0700 {TRAINEE_DIR}",
            uploads=(
                Upload(ctx.file("stacks/minio.yaml"), TRAINEE_STACK),
                *(
                    Upload(ctx.secrets.file(source), f"{TRAINEE_DIR}/{secret}", 0o600)
                    for secret, source in SECRETS.items()
                ),
            ),
            prepares=True,
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


def find_service(instance: str) -> str:
    """Shell: the swarm service of ``instance`` whatever its stack is called, in $svc."""
    return (
        "svc=$(docker service ls --format '{{.Name}}' | grep -E "
        f"{sh('(^|_)' + instance + '$')} | head -n 1)"
    )


def runs_where(instance: str) -> str:
    """Shell: '<node> <state>' of the instance's running task, or ABSENT."""
    absent = f"{ABSENT} no swarm service {instance} or *_{instance}"
    return (
        f"{find_service(instance)}; "
        f'if [ -z "$svc" ]; then echo {sh(absent)}; '
        'else docker service ps "$svc" --filter desired-state=running '
        "--format '{{.Node}} {{.CurrentState}}' | cut -d' ' -f1,2 | head -n 1; fi"
    )


def service(ctx: PhaseContext, instance: str) -> str:
    """The instance's service name when the stack has lab.yaml's name."""
    return f"{ctx.spec.minio.stack}_{instance}"


def health_url(ctx: PhaseContext, node: str, port: int) -> str:
    return f"http://{ctx.ip(node)}:{port}/minio/health/cluster"


def checks(ctx: PhaseContext) -> list[Check]:
    # By outcome: whatever the trainee called the stack, each instance runs on its
    # labelled node and answers. A missing service fails at once (nothing converges).
    result = []
    for inst in ctx.spec.minio.instances:
        result.append(
            Check(
                f"{inst.name} runs on {inst.node}",
                f"{inst.node} Running",
                ctx.leader,
                runs_where(inst.name),
                settle_for=60,
                hint=f"docker service ls; docker service ps --no-trunc {service(ctx, inst.name)}",
            )
        )
        result.append(
            Check(
                f"{inst.name} answers on {inst.node}:{inst.port} (/minio/health/cluster)",
                "200",
                inst.node,
                http_code(health_url(ctx, inst.node, inst.port)),
                settle_for=60,
                hint=f"curl -i {health_url(ctx, inst.node, inst.port)}; "
                f"docker service logs --tail 20 {service(ctx, inst.name)}",
            )
        )
    return result


def trainee(ctx: PhaseContext) -> list[TraineeCommand]:
    leader, stack = ctx.leader, ctx.spec.minio.stack
    data_dirs = " ".join(inst.data for inst in ctx.spec.minio.instances)
    first = ctx.spec.minio.instances[0]
    clock = TraineeCommand(
        "MinIO needs synced clocks: the date.timer the nodes were provisioned with",
        "systemctl list-timers date.timer",
        leader,
        run=ctx.caps.systemd,
    )
    return [
        clock,
        TraineeCommand(
            "one data directory per instance on the shared (NFS) directory "
            "(prefix sudo where you log in as core)",
            f"mkdir -p {data_dirs}",
            leader,
        ),
        TraineeCommand(
            "the keys as docker secrets, never in the stack file (the kit put the lab's "
            f"keys in ~/{TRAINEE_DIR}/, mode 0600)",
            f"docker secret create access_key ~/{TRAINEE_DIR}/access_key && "
            f"docker secret create secret_key ~/{TRAINEE_DIR}/secret_key",
            leader,
        ),
        TraineeCommand(
            "the stack file (rendered from lab.yaml): four instances, one port each, "
            "pinned by the labels",
            f"cat ~/{TRAINEE_STACK}",
            leader,
        ),
        TraineeCommand("deploy it", f"docker stack deploy -c ~/{TRAINEE_STACK} {stack}", leader),
        TraineeCommand(
            "give it time: every service reaches 1/1",
            f"docker stack services {stack}",
            leader,
        ),
        TraineeCommand(
            "the logs of one instance",
            f"docker service logs --tail 20 {service(ctx, first.name)}",
            leader,
        ),
        TraineeCommand(
            "MinIO answers",
            f"curl -i {health_url(ctx, first.node, first.port)}",
            leader,
        ),
    ]


def differences(ctx: PhaseContext) -> list[str]:
    diffs = [
        "random keys made at the first render (build/<lab>/secrets/), never minio/minio123",
        f"a pinned MinIO release ({ctx.spec.minio.image}): the tutorial's "
        "nitisht/minio:swarm4 and minio:edge are gone, and the kit pins every image",
        "the stack file is rendered from lab.yaml; the kit puts it on the first node as "
        f"~/{TRAINEE_STACK} (the tutorial's name)",
        "there is no web UI step: the pinned MinIO's console is not published, and the S3 "
        "stand-in has none; the bucket phase uses a command line S3 client instead",
    ]
    if not ctx.caps.systemd:
        diffs.append(
            "no systemd in these nodes: the date.timer is rendered and validated, not run "
            "(the nodes share the host's clock)"
        )
    return diffs
