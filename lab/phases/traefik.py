"""Phase traefik: a load balancer in front of every registry, with health checks."""

from __future__ import annotations

from lab.phases.common import (
    container_step,
    http_code,
    same_digest,
    sh,
    wait_for_registries,
    wait_for_storage,
)
from lab.phases.context import PhaseContext
from lab.plan import Check, Step

TITLE = "a load balancer in front of all registries"
EXPLAIN = """\
The last piece of high availability: one address in front of every registry.
The load balancer health-checks each registry on /v2/ and sends requests only
to the healthy ones. Traefik is the tutorial's first choice; HAProxy and nginx
are its alternatives (lab.yaml: loadbalancer.kind)."""

CONTAINER = "lb"
PROBE_REPO = "lab/hello-world"
PROBE_TAG = "through-lb"


def _config_dir(ctx: PhaseContext) -> str:
    return f"{ctx.spec.registry.config_dir}/lb"


def _run_args(ctx: PhaseContext) -> tuple[list[tuple[str, str, str]], str]:
    lb = ctx.spec.loadbalancer
    port = f"-p {lb.port}:{lb.port}"
    cfg = _config_dir(ctx)
    if ctx.lb_kind == "traefik":
        return (
            [
                ("lb/traefik.yml", f"{cfg}/traefik.yml", "0644"),
                ("lb/traefik-dynamic.yml", f"{cfg}/dynamic.yml", "0644"),
            ],
            f"{port} -v {sh(cfg + '/traefik.yml:/etc/traefik/traefik.yml:ro')} "
            f"-v {sh(cfg + '/dynamic.yml:/etc/traefik/dynamic.yml:ro', lb.traefik_image)}",
        )
    if ctx.lb_kind == "haproxy":
        return (
            [("lb/haproxy.cfg", f"{cfg}/haproxy.cfg", "0644")],
            f"{port} -v {sh(cfg + '/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro')} "
            f"{sh(lb.haproxy_image)} haproxy -f /usr/local/etc/haproxy/haproxy.cfg",
        )
    return (
        [("lb/nginx.conf", f"{cfg}/nginx.conf", "0644")],
        f"{port} -v {sh(cfg + '/nginx.conf:/etc/nginx/nginx.conf:ro')} "
        f"{sh(lb.nginx_image)} nginx -c /etc/nginx/nginx.conf -g 'daemon off;'",
    )


def plan(ctx: PhaseContext) -> list[Step]:
    node = ctx.spec.lb_node.name
    configs, run_args = _run_args(ctx)
    lb = ctx.lb_address
    hello = ctx.spec.demo.hello_image
    probe = f"{lb}/{PROBE_REPO}:{PROBE_TAG}"
    return [
        wait_for_storage(ctx),
        wait_for_registries(ctx),
        container_step(
            ctx, f"run {ctx.lb_kind} on {node} at {lb}", (node,), CONTAINER, configs, run_args
        ),
        Step(
            "wait until the load balancer answers /v2/",
            (node,),
            f"curl -sf -m 5 {sh(f'http://{lb}/v2/')} >/dev/null",
            retry_for=90,
        ),
        Step(
            "push through the load balancer",
            (ctx.node_names[-1],),
            f"docker pull -q {sh(hello)} >/dev/null "
            f"&& docker tag {sh(hello, probe)} "
            f"&& docker push {sh(probe)}",
        ),
    ]


def _backends_seen(ctx: PhaseContext) -> str:
    """Shell on the LB node: send requests, print how many registries answered them."""
    lb = ctx.lb_address
    rounds = 4 * len(ctx.node_names)
    requests = (
        f"for i in $(seq 1 {rounds}); do curl -s -o /dev/null -D - -m 5 {sh(f'http://{lb}/v2/')}; "
        "done"
    )
    if ctx.lb_kind == "traefik":
        # Traefik's access log names the backend URL of every request.
        return (
            f"{requests} >/dev/null; docker logs {CONTAINER} 2>&1 "
            f"| grep -o 'http://[0-9.]*:{ctx.registry_port}' | sort -u | wc -l"
        )
    return (
        f"{requests} | tr -d '\\r' | awk -F': ' 'tolower($1)==\"x-served-by\"{{print $2}}' "
        "| sort -u | wc -l"
    )


def checks(ctx: PhaseContext) -> list[Check]:
    lb = ctx.lb_address
    n = len(ctx.node_names)
    puller = ctx.node_names[0]
    return [
        Check(
            f"{ctx.lb_kind} answers /v2/ at {lb}",
            "200",
            ctx.spec.lb_node.name,
            http_code(f"http://{lb}/v2/"),
            settle_for=30,
        ),
        Check(
            "an image pushed through the load balancer pulls through it with the same digest",
            "same digest",
            puller,
            same_digest(lb, PROBE_REPO, PROBE_TAG, f"{lb}/{PROBE_REPO}:{PROBE_TAG}"),
            timeout=180,
        ),
        Check(
            f"requests reach all {n} registries",
            str(n),
            ctx.spec.lb_node.name,
            _backends_seen(ctx),
            settle_for=30,
        ),
    ]
