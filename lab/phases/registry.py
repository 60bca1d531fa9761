"""Phase registry: a registry on every node, storing in MinIO, caching in Redis."""

from __future__ import annotations

from lab.phases.common import container_step, http_code, same_digest, sh, wait_for_storage
from lab.phases.context import PhaseContext
from lab.plan import ABSENT, Check, Step, TraineeCommand, Upload

TITLE = "a registry on every node (S3 in MinIO, cache in Redis)"
TUTORIAL = "Docker Registry Setup Using Redis Cache; verify Redis and the object storage"
EXPLAIN = """\
Every node runs distribution's registry 2.8. It stores layers and manifests in
the docker bucket through its own node's MinIO instance, caches blob
descriptors in its node's Redis, and shares one http.secret with the others so
that a load balancer may send the parts of one upload to different
registries. Because all of them use one bucket, an image pushed through one
node can be pulled through any other."""

CONTAINER = "registry"
DEMO_REPO = "lab/hello-world"
# The node's config, under the tutorial's name, in the login user's home (0600: it
# holds the MinIO keys and the http secret).
TRAINEE_CONFIG = "lab/docker-registry-config.yml"


def config_path(ctx: PhaseContext) -> str:
    return f"{ctx.spec.registry.config_dir}/config.yml"


def demo_tag(ctx: PhaseContext) -> str:
    return ctx.spec.demo.hello_image.split(":", 1)[1]


def plan(ctx: PhaseContext) -> list[Step]:
    port = ctx.registry_port
    leader_registry = f"{ctx.ip(ctx.leader)}:{port}"
    hello = ctx.spec.demo.hello_image
    pushed = f"{leader_registry}/{DEMO_REPO}:{demo_tag(ctx)}"
    # The registries start while MinIO may still be coming back (after a restore);
    # they answer /v2/ once their storage does.
    steps = [
        Step(
            f"put each node's config in ~/{TRAINEE_CONFIG} for trainees",
            tuple(ctx.node_names),
            f"chmod 0600 {TRAINEE_CONFIG}",
            uploads=(Upload(ctx.file("registry/{node}.yml"), TRAINEE_CONFIG, 0o600),),
            prepares=True,
        ),
        container_step(
            ctx,
            "run a registry with its node's config on every node",
            tuple(ctx.node_names),
            CONTAINER,
            [("registry/{node}.yml", config_path(ctx), "0600")],
            f"-p {port}:{port} -v {sh(config_path(ctx) + ':/etc/docker/registry/config.yml:ro')} "
            f"{sh(ctx.spec.registry.image)}",
        ),
    ]
    steps += [
        wait_for_storage(ctx),
        Step(
            "wait until every registry answers /v2/",
            tuple(ctx.node_names),
            f"curl -sf -m 5 http://{{node_ip}}:{port}/v2/ >/dev/null",
            retry_for=90,
        ),
        Step(
            f"push {hello} through {ctx.leader}",
            (ctx.leader,),
            f"docker pull -q {sh(hello)} >/dev/null && docker tag {sh(hello, pushed)} "
            f"&& docker push {sh(pushed)}",
        ),
    ]
    return steps


def pushed_image(registry: str, preferred: str) -> str:
    """Shell: find an image in ``registry`` (``preferred`` repo first, else any), as
    $repo and $tag; echo ABSENT and stop when the registry holds none."""
    return (
        f"cat=$(curl -s -m 10 http://{registry}/v2/_catalog); "
        'repos=$(echo "$cat" | grep -o \'"[^"]*"\' | tr -d \'"\' | grep -vx repositories); '
        f'repo=$(echo "$repos" | grep -x \'{preferred}\' || echo "$repos" | head -n 1); '
        f'[ -n "$repo" ] || {{ echo "{ABSENT} no image pushed to {registry}"; exit 0; }}; '
        f'tag=$(curl -s -m 10 "http://{registry}/v2/$repo/tags/list" '
        "| grep -o '\"tags\":\\[[^]]*' | grep -o '\"[^\"]*\"' | tr -d '\"' "
        "| grep -vx tags | head -n 1)"
    )


def checks(ctx: PhaseContext) -> list[Check]:
    port = ctx.registry_port
    leader_registry = f"{ctx.ip(ctx.leader)}:{port}"
    result = [
        Check(
            f"the registry on {node} answers /v2/",
            "200",
            node,
            http_code(f"http://{ctx.ip(node)}:{port}/v2/"),
            settle_for=30,
            hint=f"curl -i http://{ctx.ip(node)}:{port}/v2/; docker logs --tail 20 {CONTAINER}",
        )
        for node in ctx.node_names
    ]
    # By outcome: whatever image the trainee pushed (the tutorial's hello-world or the
    # kit's lab/hello-world), it pulls back through every other node with its digest.
    for node in ctx.node_names[1:]:
        pull_ref = f"{ctx.ip(node)}:{port}/$repo:$tag"
        result.append(
            Check(
                f"an image pushed through {ctx.leader} pulls through {node} with the same digest",
                "same digest",
                node,
                pushed_image(leader_registry, DEMO_REPO)
                + "; "
                + same_digest(leader_registry, "$repo", "$tag", pull_ref),
                timeout=180,
                hint=f"curl -s http://{leader_registry}/v2/_catalog",
            )
        )
    for node in ctx.node_names:
        result.append(
            Check(
                f"Redis on {node} holds the registry's blob descriptors",
                "blobs::sha256:",
                node,
                f"docker exec redis redis-cli -p {ctx.spec.redis.port} --scan "
                "--pattern 'blobs::*' | head -n 1 | cut -c1-14",
                settle_for=10,
                hint=f"docker exec redis redis-cli -p {ctx.spec.redis.port} --scan "
                "--pattern 'blobs::*'; docker logs registry 2>&1 | grep -i redis | tail -n 5",
            )
        )
    return result


def trainee(ctx: PhaseContext) -> list[TraineeCommand]:
    port = ctx.registry_port
    leader = ctx.leader
    hello = ctx.spec.demo.hello_image
    pushed = f"{ctx.ip(leader)}:{port}/hello-world:{demo_tag(ctx)}"
    run = (
        f"docker run -d --name {CONTAINER} --restart unless-stopped -p {port}:{port} "
        f"-v ~/{TRAINEE_CONFIG}:/etc/docker/registry/config.yml:ro {ctx.spec.registry.image}"
    )
    return [
        TraineeCommand(
            "this node's registry config (the kit rendered it: its own MinIO, its own Redis, "
            "the shared http.secret; 0600 because it holds the keys)",
            f"ls -l ~/{TRAINEE_CONFIG}",
            leader,
        ),
        *(
            TraineeCommand("a registry on every node that runs MinIO", run, node)
            for node in ctx.node_names
        ),
        TraineeCommand(
            "in a second window: watch Redis while you push (Ctrl-C ends it)",
            f"docker exec -it redis redis-cli -p {ctx.spec.redis.port} monitor",
            leader,
        ),
        TraineeCommand(
            "pull, tag and push hello-world into your registry: the monitor window fills",
            f"docker pull {hello} && docker tag {hello} {pushed} && docker push {pushed}",
            leader,
        ),
        TraineeCommand(
            "the registry's log mentions redis",
            "docker logs registry 2>&1 | grep -i redis",
            leader,
        ),
        TraineeCommand(
            "the image is in the bucket (the object storage works)",
            f"s3cmd ls --recursive s3://{ctx.spec.bucket.name} | head",
            leader,
        ),
        *(
            TraineeCommand(
                "and pulls through another node's registry",
                f"docker pull {ctx.ip(node)}:{port}/hello-world:{demo_tag(ctx)}",
                node,
            )
            for node in ctx.node_names[1:2]
        ),
    ]


def differences(ctx: PhaseContext) -> list[str]:
    return [
        "one config per node (each points at its own MinIO instance and Redis), kept as "
        f"~/{TRAINEE_CONFIG} on each node and /etc/docker/registry/config.yml for the kit",
        f"the test image is {ctx.spec.demo.hello_image}: the kit pins a tag (no :latest) "
        f"and pushes it as {DEMO_REPO}; the check accepts any image pushed",
        "pushes go to <node IP>:5000 over plain HTTP, so every node's daemon.json lists the "
        "lab subnet under insecure-registries (the tutorial's note: no TLS, no auth)",
    ]
