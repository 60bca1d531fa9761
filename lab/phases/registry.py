"""Phase registry: a registry on every node, storing in MinIO, caching in Redis."""

from __future__ import annotations

from lab.phases.common import (
    container_step,
    http_code,
    login_step,
    push_login,
    registry_curl,
    registry_url,
    same_digest,
    sh,
    trust_step,
    wait_for_registries,
    wait_for_storage,
)
from lab.phases.context import PhaseContext
from lab.plan import ABSENT, Check, Step, TraineeCommand, Upload
from lab.secrets import PUSH_USER

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
# With registry.tls: the certificate, its key and the push account's htpasswd, as the
# registry's container sees them, and the trainee's copy.
TLS_FILES = (
    ("secrets/registry.crt", "registry.crt", "0644"),
    ("secrets/registry.key", "registry.key", "0600"),
    ("secrets/registry.htpasswd", "htpasswd", "0644"),
)
TRAINEE_TLS = "lab/registry-tls"


def tls_dir(ctx: PhaseContext) -> str:
    return f"{ctx.spec.registry.config_dir}/tls"


def _tls_mount(ctx: PhaseContext, source: str) -> str:
    return f" -v {sh(source + ':/etc/docker/registry/tls:ro')}" if ctx.spec.registry.tls else ""


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
    tls = ctx.spec.registry.tls
    trainee_uploads = [Upload(ctx.file("registry/{node}.yml"), TRAINEE_CONFIG, 0o600)]
    configs = [("registry/{node}.yml", config_path(ctx), "0600")]
    if tls:
        trainee_uploads += [
            Upload(ctx.file(src), f"{TRAINEE_TLS}/{name}", int(mode, 8))
            for src, name, mode in TLS_FILES
        ]
        configs += [(src, f"{tls_dir(ctx)}/{name}", mode) for src, name, mode in TLS_FILES]
    steps = [trust_step(ctx)] if tls else []
    steps += [
        Step(
            f"put each node's config in ~/{TRAINEE_CONFIG} for trainees",
            tuple(ctx.node_names),
            f"chmod 0600 {TRAINEE_CONFIG}",
            uploads=tuple(trainee_uploads),
            prepares=True,
        ),
        container_step(
            ctx,
            "run a registry with its node's config on every node",
            tuple(ctx.node_names),
            CONTAINER,
            configs,
            f"-p {port}:{port} -v {sh(config_path(ctx) + ':/etc/docker/registry/config.yml:ro')}"
            f"{_tls_mount(ctx, tls_dir(ctx))} {sh(ctx.spec.registry.image)}",
        ),
    ]
    steps += [wait_for_storage(ctx), wait_for_registries(ctx)]
    if tls:  # docker pushes and pulls through any node's registry as the push account
        steps += [
            login_step(ctx, f"{ctx.ip(node)}:{port}", tuple(ctx.node_names), reader=False)
            for node in ctx.node_names
        ]
    steps += [
        Step(
            f"push {hello} through {ctx.leader}",
            (ctx.leader,),
            f"docker pull -q {sh(hello)} >/dev/null && docker tag {sh(hello, pushed)} "
            f"&& docker push {sh(pushed)}",
        ),
    ]
    return steps


def pushed_image(registry: str, preferred: str, ctx: PhaseContext) -> str:
    """Shell: find an image in ``registry`` (``preferred`` repo first, else any), as
    $repo and $tag; echo ABSENT and stop when the registry holds none."""
    curl = registry_curl(ctx)
    scheme = "https" if ctx.spec.registry.tls else "http"
    return (
        f"cat=$({curl} -s -m 10 {scheme}://{registry}/v2/_catalog); "
        'repos=$(echo "$cat" | grep -o \'"[^"]*"\' | tr -d \'"\' | grep -vx repositories); '
        f'repo=$(echo "$repos" | grep -x \'{preferred}\' || echo "$repos" | head -n 1); '
        f'[ -n "$repo" ] || {{ echo "{ABSENT} no image pushed to {registry}"; exit 0; }}; '
        f'tag=$({curl} -s -m 10 "{scheme}://{registry}/v2/$repo/tags/list" '
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
            http_code(registry_url(ctx, f"{ctx.ip(node)}:{port}"), registry_curl(ctx)),
            settle_for=30,
            hint=f"{registry_curl(ctx)} -i {registry_url(ctx, f'{ctx.ip(node)}:{port}')}; "
            f"docker logs --tail 20 {CONTAINER}",
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
                pushed_image(leader_registry, DEMO_REPO, ctx)
                + "; "
                + push_login(ctx, f"{ctx.ip(node)}:{port}")
                + same_digest(leader_registry, "$repo", "$tag", pull_ref, ctx),
                timeout=180,
                hint=f"{registry_curl(ctx)} -s "
                + registry_url(ctx, leader_registry, "/v2/_catalog"),
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
    tls_mount = _tls_mount(ctx, f"$HOME/{TRAINEE_TLS}").replace("'", "")
    run = (
        f"docker run -d --name {CONTAINER} --restart unless-stopped -p {port}:{port} "
        f"-v ~/{TRAINEE_CONFIG}:/etc/docker/registry/config.yml:ro{tls_mount} "
        f"{ctx.spec.registry.image}"
    )
    login = (
        [
            TraineeCommand(
                "log in to your registry as the push account (its password: "
                "build/<lab>/secrets/registry_push_password on the host)",
                f"docker login -u {PUSH_USER} {ctx.ip(leader)}:{port}",
                leader,
            )
        ]
        if ctx.spec.registry.tls
        else []
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
        *login,
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
        *(
            [
                "the tutorial's registries speak plain HTTP to anyone; here each serves HTTPS "
                "with a certificate from the lab CA (every node's docker trusts it in "
                "/etc/docker/certs.d/) and lets in only the push account (htpasswd, bcrypt)"
            ]
            if ctx.spec.registry.tls
            else [
                "pushes go to <node IP>:5000 over plain HTTP, so every node's daemon.json "
                "lists the lab subnet under insecure-registries (the tutorial's way: "
                "registry.tls is false)"
            ]
        ),
    ]
