"""Phase redis: a Redis cache beside every registry."""

from __future__ import annotations

from lab.phases.common import container_step, sh
from lab.phases.context import PhaseContext
from lab.plan import Check, Step, TraineeCommand, contains

TITLE = "Redis beside every registry"
TUTORIAL = "Docker Registry Installation and configuration: Redis installation for Cache"
EXPLAIN = """\
Each registry caches blob descriptors (which layers exist, their sizes and
digests) in a Redis on its own node, sparing MinIO a round trip per layer. It
is a cache only: no persistence, and when it is full the least recently used
keys go first (maxmemory-policy allkeys-lru, as the registry docs advise)."""

CONTAINER = "redis"


def conf_path(ctx: PhaseContext) -> str:
    return f"{ctx.spec.registry.config_dir}/redis.conf"


def plan(ctx: PhaseContext) -> list[Step]:
    port = ctx.spec.redis.port
    return [
        container_step(
            ctx,
            "run Redis on every node",
            tuple(ctx.node_names),
            CONTAINER,
            [("redis/redis.conf", conf_path(ctx), "0644")],
            f"-p {port}:{port} -v {sh(conf_path(ctx) + ':/etc/redis/redis.conf:ro')} "
            f"{sh(ctx.spec.redis.image)} redis-server /etc/redis/redis.conf",
        ),
        Step(
            "wait until every Redis answers",
            tuple(ctx.node_names),
            f"docker exec {CONTAINER} redis-cli -h {{node_ip}} -p {port} ping | grep -qx PONG",
            retry_for=60,
        ),
    ]


def checks(ctx: PhaseContext) -> list[Check]:
    port = ctx.spec.redis.port
    result = []
    for node in ctx.node_names:
        result.append(
            Check(
                "Redis answers PING",
                "PONG",
                node,
                f"docker exec {CONTAINER} redis-cli -h {sh(ctx.ip(node))} -p {port} ping",
                settle_for=20,
                hint=f"docker ps -a --filter name={CONTAINER}; docker logs --tail 20 {CONTAINER}",
            )
        )
        result.append(
            Check(
                "Redis evicts with allkeys-lru and keeps nothing on disk",
                "allkeys-lru, save ''",
                node,
                f'docker exec {CONTAINER} sh -c "redis-cli -p {port} config get maxmemory-policy '
                f'| tail -n 1; redis-cli -p {port} config get save | tail -n 1" | paste -sd,',
                test=contains("allkeys-lru,"),
                hint=f"docker exec {CONTAINER} redis-cli -p {port} config get 'maxmemory*'",
            )
        )
    return result


def trainee(ctx: PhaseContext) -> list[TraineeCommand]:
    r = ctx.spec.redis
    run = (
        f"docker run -d --name {CONTAINER} --restart unless-stopped -p {r.port}:{r.port} "
        f"{r.image} redis-server --port {r.port} --maxmemory {r.maxmemory} "
        "--maxmemory-policy allkeys-lru --save ''"
    )
    return [
        *(
            TraineeCommand("a Redis cache on every node that runs a registry", run, node)
            for node in ctx.node_names
        ),
        *(
            TraineeCommand(
                "it answers", f"docker exec {CONTAINER} redis-cli -p {r.port} ping", node
            )
            for node in ctx.node_names
        ),
    ]


def differences(ctx: PhaseContext) -> list[str]:
    return [
        f"a pinned {ctx.spec.redis.image}, tuned as a cache: maxmemory "
        f"{ctx.spec.redis.maxmemory}, allkeys-lru, no persistence (the kit passes these in "
        "a config file; a trainee passes them as flags)",
        "Redis is not optional here: the registry config caches in it",
    ]
