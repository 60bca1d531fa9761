"""Phase verify: a fresh multi-layer image through the load balancer, on every node."""

from __future__ import annotations

from lab.phases.common import same_digest, sh, wait_for_registries, wait_for_storage
from lab.phases.context import PhaseContext
from lab.plan import Check, Step, TraineeCommand

TITLE = "a fresh image pushed through the load balancer, pulled on every node"
TUTORIAL = "Docker Registry High Availability And Load Balancing (the end-to-end proof)"
EXPLAIN = """\
The end-to-end proof: build a new image with several layers on the first node
(so nothing about it is cached anywhere), push it through the load balancer,
then pull it through the load balancer on every node and compare digests."""

REPO = "lab/verify"
TAG = "latest"


def plan(ctx: PhaseContext) -> list[Step]:
    image = f"{ctx.lb_address}/{REPO}:{TAG}"
    # printf fills the base image and the stamp in: neither is part of shell syntax.
    dockerfile = (
        "FROM %s\\nRUN echo %s > /stamp\\nRUN echo second layer > /second\\n"
        "RUN echo third layer > /third\\n"
    )
    return [
        wait_for_storage(ctx),
        wait_for_registries(ctx),
        Step(
            "wait until the load balancer answers /v2/",
            (ctx.leader,),
            f"curl -sf -m 5 -o /dev/null {sh(f'http://{ctx.lb_address}/v2/')}",
            retry_for=120,
        ),
        Step(
            "build a fresh three-layer image",
            (ctx.leader,),
            f"stamp=$(date +%s%N) && printf {sh(dockerfile, ctx.spec.demo.busybox_image)} "
            f'"$stamp" | DOCKER_BUILDKIT=0 docker build -q -t {sh(image)} - ',
        ),
        Step("push it through the load balancer", (ctx.leader,), f"docker push {sh(image)}"),
    ]


def checks(ctx: PhaseContext) -> list[Check]:
    lb = ctx.lb_address
    image = f"{lb}/{REPO}:{TAG}"
    return [
        Check(
            "pulled through the load balancer with the pushed digest",
            "same digest",
            node,
            # Other nodes drop any copy first, so the pull really goes through the LB.
            (f"docker image rm -f {sh(image)} >/dev/null 2>&1; " if node != ctx.leader else "")
            + same_digest(lb, REPO, TAG, image),
            timeout=180,
            hint=f"curl -s http://{lb}/v2/_catalog; docker pull {image}",
        )
        for node in ctx.node_names
    ]


def trainee(ctx: PhaseContext) -> list[TraineeCommand]:
    image = f"{ctx.lb_address}/{REPO}:{TAG}"
    base = ctx.spec.demo.busybox_image
    return [
        TraineeCommand(
            "build a new image nobody has yet",
            f"printf 'FROM {base}\\nRUN date > /stamp\\n' | DOCKER_BUILDKIT=0 "
            f"docker build -t {image} -",
            ctx.leader,
        ),
        TraineeCommand("push it through the load balancer", f"docker push {image}", ctx.leader),
        *(
            TraineeCommand(
                "pull it on another node, through the load balancer", f"docker pull {image}", node
            )
            for node in ctx.node_names[1:]
        ),
    ]


def differences(ctx: PhaseContext) -> list[str]:
    return ["the tutorial stops at the load balancer; this phase is the kit's own proof"]
