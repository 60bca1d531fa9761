"""Phase verify: a fresh multi-layer image through the load balancer, on every node."""

from __future__ import annotations

import socket
import ssl

from lab.phases.common import (
    READER_CONFIG,
    login_step,
    registry_curl,
    registry_url,
    same_digest,
    sh,
    wait_for_registries,
    wait_for_storage,
)
from lab.phases.context import PhaseContext
from lab.plan import Check, Step, TraineeCommand
from lab.secrets import PUSH_USER, READ_USER

TITLE = "a fresh image pushed through the load balancer, pulled on every node"
TUTORIAL = "Docker Registry High Availability And Load Balancing (the end-to-end proof)"
EXPLAIN = """\
The end-to-end proof: build a new image with several layers on the first node
(so nothing about it is cached anywhere), push it through the load balancer,
then pull it through the load balancer on every node and compare digests.
With registry.tls (the default) all of it is HTTPS with the lab CA: the push
goes as the push account, the pulls as the read-only account, and the checks
prove that nobody without an account, nor the read-only account, may push."""

REPO = "lab/verify"
TAG = "latest"
REFUSED_TAG = "must-be-refused"
REFUSED = "refused"


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
            f"{registry_curl(ctx)} -sf -m 5 -o /dev/null {sh(registry_url(ctx, ctx.lb_address))}",
            retry_for=120,
        ),
        *_logins(ctx),
        Step(
            "build a fresh three-layer image",
            (ctx.leader,),
            f"stamp=$(date +%s%N) && printf {sh(dockerfile, ctx.spec.demo.busybox_image)} "
            f'"$stamp" | DOCKER_BUILDKIT=0 docker build -q -t {sh(image)} - ',
        ),
        Step("push it through the load balancer", (ctx.leader,), f"docker push {sh(image)}"),
    ]


def _logins(ctx: PhaseContext) -> list[Step]:
    """The push account on the node that pushes, the read-only one on every node (its own
    docker client config): done by the traefik phase already, again in case a trainee
    did that phase by hand."""
    if not ctx.spec.registry.tls:
        return []
    return [
        login_step(ctx, ctx.lb_address, (ctx.leader,), reader=False),
        login_step(ctx, ctx.lb_address, tuple(ctx.node_names), reader=True),
    ]


def checks(ctx: PhaseContext) -> list[Check]:
    lb = ctx.lb_address
    image = f"{lb}/{REPO}:{TAG}"
    tls = ctx.spec.registry.tls
    # With TLS the pulls go as the read-only account: reading is all it may do.
    docker = f"docker --config {READER_CONFIG}" if tls else "docker"
    who = f" as {READ_USER}" if tls else ""
    pulls = [
        Check(
            f"pulled through the load balancer{who} with the pushed digest",
            "same digest",
            node,
            # Other nodes drop any copy first, so the pull really goes through the LB.
            (f"docker image rm -f {sh(image)} >/dev/null 2>&1; " if node != ctx.leader else "")
            + same_digest(lb, REPO, TAG, image, ctx, docker=docker),
            timeout=180,
            hint=f"{registry_curl(ctx)} -s {registry_url(ctx, lb, '/v2/_catalog')}; "
            f"{docker} pull {image}",
        )
        for node in ctx.node_names
    ]
    return pulls + (_security_checks(ctx, image) if tls else [])


def _refused_push(docker: str, image: str) -> str:
    """Shell: tag ``image`` anew and push it with ``docker``; say 'refused' when the
    registry refused it for want of a (writing) account."""
    target = image.rsplit(":", 1)[0] + f":{REFUSED_TAG}"
    return (
        f"docker tag {sh(image, target)} && out=$({docker} push {sh(target)} 2>&1); "
        f"rc=$?; docker rmi {sh(target)} >/dev/null 2>&1; "
        'case "$rc:$out" in 0:*) echo "pushed: nothing refused it";; '
        f"*unauthorized*|*denied*|*'basic auth'*|*403*|*401*|*Forbidden*) echo {REFUSED};; "
        '*) echo "failed otherwise: $(echo "$out" | tail -n 1)";; esac'
    )


def _security_checks(ctx: PhaseContext, image: str) -> list[Check]:
    anonymous = (
        "d=$(mktemp -d) && " + _refused_push('docker --config "$d"', image) + '; rm -rf "$d"'
    )
    return [
        Check(
            f"the lab CA verifies the certificate of {ctx.lb_address} (from the host)",
            "verified",
            probe=_chain_verifies,
            settle_for=10,
            hint=f"openssl s_client -connect {ctx.lb_address} -CAfile build/<lab>/secrets/ca.crt "
            "-verify_return_error </dev/null",
        ),
        Check(
            "a push without an account is refused",
            REFUSED,
            ctx.leader,
            anonymous,
            timeout=180,
            hint=f"docker logout {ctx.lb_address}; docker push {image}",
        ),
        Check(
            f"a push as the read-only account {READ_USER} is refused",
            REFUSED,
            ctx.leader,
            _refused_push(f"docker --config {READER_CONFIG}", image),
            timeout=180,
            hint=f"docker --config {READER_CONFIG} push {image}",
        ),
    ]


def _chain_verifies(ctx: PhaseContext) -> str:
    """TLS to the front address with only the lab CA trusted, the address as the name."""
    host, _, port = ctx.lb_address.rpartition(":")
    context = ssl.create_default_context(cafile=str(ctx.file("secrets/ca.crt")))
    try:
        with (
            socket.create_connection((host, int(port)), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            tls.getpeercert()
    except (OSError, ssl.SSLError) as exc:
        return f"not verified: {exc}"
    return "verified"


def trainee(ctx: PhaseContext) -> list[TraineeCommand]:
    image = f"{ctx.lb_address}/{REPO}:{TAG}"
    base = ctx.spec.demo.busybox_image
    login = [
        TraineeCommand(
            f"log in at the load balancer as the push account {PUSH_USER} (its password: "
            "build/<lab>/secrets/registry_push_password on the host)",
            f"docker login -u {PUSH_USER} {ctx.lb_address}",
            ctx.leader,
        ),
        *(
            TraineeCommand(
                f"as the read-only account {READ_USER} (registry_read_password), in a client "
                "config of its own: it may pull, its pushes are refused",
                f"docker --config ~/{READER_CONFIG} login -u {READ_USER} {ctx.lb_address}",
                node,
            )
            for node in ctx.node_names[1:]
        ),
    ]
    pull = f"docker --config ~/{READER_CONFIG} pull" if ctx.spec.registry.tls else "docker pull"
    return [
        *(login if ctx.spec.registry.tls else []),
        TraineeCommand(
            "build a new image nobody has yet",
            f"printf 'FROM {base}\\nRUN date > /stamp\\n' | DOCKER_BUILDKIT=0 "
            f"docker build -t {image} -",
            ctx.leader,
        ),
        TraineeCommand("push it through the load balancer", f"docker push {image}", ctx.leader),
        *(
            TraineeCommand(
                "pull it on another node, through the load balancer", f"{pull} {image}", node
            )
            for node in ctx.node_names[1:]
        ),
    ]


def differences(ctx: PhaseContext) -> list[str]:
    notes = ["the tutorial stops at the load balancer; this phase is the kit's own proof"]
    if ctx.spec.registry.tls:
        notes.append(
            "HTTPS and accounts (the tutorial's registry is open to anyone): the load "
            f"balancer lets {READ_USER} only GET and HEAD and sends what it lets through on "
            f"as {PUSH_USER}, the only account the registries themselves accept"
        )
    return notes
