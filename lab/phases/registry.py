"""Phase registry: a registry on every node, storing in MinIO, caching in Redis."""

from __future__ import annotations

from lab.phases.common import container_step, http_code, same_digest, sh, wait_for_storage
from lab.phases.context import PhaseContext
from lab.plan import Check, Step

TITLE = "a registry on every node (S3 in MinIO, cache in Redis)"
EXPLAIN = """\
Every node runs distribution's registry 2.8. It stores layers and manifests in
the docker bucket through its own node's MinIO instance, caches blob
descriptors in its node's Redis, and shares one http.secret with the others so
that a load balancer may send the parts of one upload to different
registries. Because all of them use one bucket, an image pushed through one
node can be pulled through any other."""

CONTAINER = "registry"
DEMO_REPO = "lab/hello-world"


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
        container_step(
            ctx,
            "run a registry with its node's config on every node",
            tuple(ctx.node_names),
            CONTAINER,
            [("registry/{node}.yml", config_path(ctx), "0600")],
            f"-p {port}:{port} -v {sh(config_path(ctx) + ':/etc/docker/registry/config.yml:ro')} "
            f"{sh(ctx.spec.registry.image)}",
        )
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


def checks(ctx: PhaseContext) -> list[Check]:
    port = ctx.registry_port
    leader_registry = f"{ctx.ip(ctx.leader)}:{port}"
    tag = demo_tag(ctx)
    result = [
        Check(
            "registry answers /v2/",
            "200",
            node,
            http_code(f"http://{ctx.ip(node)}:{port}/v2/"),
            settle_for=30,
        )
        for node in ctx.node_names
    ]
    for node in ctx.node_names[1:]:
        pull_ref = f"{ctx.ip(node)}:{port}/{DEMO_REPO}:{tag}"
        result.append(
            Check(
                f"image pushed through {ctx.leader} pulls through {node} with the same digest",
                "same digest",
                node,
                same_digest(leader_registry, DEMO_REPO, tag, pull_ref),
                timeout=180,
            )
        )
    for node in ctx.node_names:
        result.append(
            Check(
                "Redis holds the registry's blob descriptors",
                "blobs::sha256:",
                node,
                f"docker exec redis redis-cli -p {ctx.spec.redis.port} --scan "
                "--pattern 'blobs::*' | head -n 1 | cut -c1-14",
                settle_for=10,
            )
        )
    return result
