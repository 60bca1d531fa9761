"""Phase traefik: a load balancer in front of every registry, with health checks; with
``loadbalancer.vip``, on several nodes behind a virtual IP that keepalived moves."""

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
    wait_for_registries,
    wait_for_storage,
)
from lab.phases.context import PhaseContext
from lab.plan import Check, Step
from lab.render import LB_TLS_DIR

TITLE = "a load balancer in front of all registries"
EXPLAIN = """\
The last piece of high availability: one address in front of every registry.
The load balancer health-checks each registry on /v2/ and sends requests only
to the healthy ones. Traefik is the tutorial's first choice; HAProxy and nginx
are its alternatives (lab.yaml: loadbalancer.kind). With loadbalancer.nodes
and loadbalancer.vip (labs/ha-front-door.yaml) it runs on several nodes, and
keepalived keeps the virtual IP on one of them whose load balancer answers."""

CONTAINER = "lb"
KEEPALIVED_CONTAINER = "keepalived"
PROBE_REPO = "lab/hello-world"
PROBE_TAG = "through-lb"


# With registry.tls: what the load balancer's container sees in LB_TLS_DIR.
LB_TLS_FILES = ("ca.crt", "registry.crt", "registry.key", "registry.pem", "lb.htpasswd")


def _config_dir(ctx: PhaseContext) -> str:
    return f"{ctx.spec.registry.config_dir}/lb"


def _tls_configs(ctx: PhaseContext) -> tuple[list[tuple[str, str, str]], str]:
    """(configs, docker run argument) of the lab's certificate, CA and accounts."""
    if not ctx.spec.registry.tls:
        return [], ""
    cfg = f"{_config_dir(ctx)}/tls"
    configs = [(f"secrets/{name}", f"{cfg}/{name}", "0600") for name in LB_TLS_FILES]
    return configs, f"-v {sh(cfg + ':' + LB_TLS_DIR + ':ro')} "


def _run_args(ctx: PhaseContext) -> tuple[list[tuple[str, str, str]], str]:
    configs, run_args = _lb_run_args(ctx)
    tls_configs, tls_mount = _tls_configs(ctx)
    return configs + tls_configs, tls_mount + run_args


def _lb_run_args(ctx: PhaseContext) -> tuple[list[tuple[str, str, str]], str]:
    lb = ctx.spec.loadbalancer
    # The node's own network, not a published port: -p puts every byte through the
    # docker bridge and NAT, and a request to the node's own registry through
    # docker-proxy in userspace; a 50 MB pull took 1.5-2x as long as straight from a
    # registry (bench/bench_lb.py). The load balancer listens on lb.port either way.
    port = "--net=host"
    cfg = _config_dir(ctx)
    # 0600 with TLS: the configs hold the push account's Authorization value.
    mode = "0600" if ctx.spec.registry.tls else "0644"
    if ctx.lb_kind == "traefik":
        return (
            [
                ("lb/traefik.yml", f"{cfg}/traefik.yml", "0644"),
                ("lb/traefik-dynamic.yml", f"{cfg}/dynamic.yml", mode),
            ],
            f"{port} -v {sh(cfg + '/traefik.yml:/etc/traefik/traefik.yml:ro')} "
            f"-v {sh(cfg + '/dynamic.yml:/etc/traefik/dynamic.yml:ro', lb.traefik_image)}",
        )
    if ctx.lb_kind == "haproxy":
        return (
            [("lb/haproxy.cfg", f"{cfg}/haproxy.cfg", mode)],
            f"{port} -v {sh(cfg + '/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro')} "
            f"{sh(lb.haproxy_image)} haproxy -f /usr/local/etc/haproxy/haproxy.cfg",
        )
    return (
        [("lb/nginx.conf", f"{cfg}/nginx.conf", mode)],
        f"{port} -v {sh(cfg + '/nginx.conf:/etc/nginx/nginx.conf:ro')} "
        f"{sh(lb.nginx_image)} nginx -c /etc/nginx/nginx.conf -g 'daemon off;'",
    )


def _has_vip(ctx: PhaseContext) -> bool:
    """Several load balancer nodes, behind the virtual IP the spec then requires."""
    return len(ctx.lb_node_names) > 1


def _own_lb(ctx: PhaseContext, node: str) -> str:
    """A node's own load balancer (not the front address)."""
    return f"{ctx.ip(node)}:{ctx.spec.loadbalancer.port}"


def plan(ctx: PhaseContext) -> list[Step]:
    configs, run_args = _run_args(ctx)
    lb = ctx.lb_address
    hello = ctx.spec.demo.hello_image
    probe = f"{lb}/{PROBE_REPO}:{PROBE_TAG}"
    lb_steps = _front_door_steps if _has_vip(ctx) else _single_lb_steps
    return [
        wait_for_storage(ctx),
        wait_for_registries(ctx),
        *lb_steps(ctx, configs, run_args),
        *_logins(ctx),
        Step(
            "push through the load balancer",
            (ctx.node_names[-1],),
            f"docker pull -q {sh(hello)} >/dev/null "
            f"&& docker tag {sh(hello, probe)} "
            f"&& docker push {sh(probe)}",
        ),
    ]


def _logins(ctx: PhaseContext) -> list[Step]:
    """Every node's docker logs in at the front address: the push account by default, the
    read-only one in its own client config (verify pulls with it)."""
    if not ctx.spec.registry.tls:
        return []
    nodes = tuple(ctx.node_names)
    return [
        login_step(ctx, ctx.lb_address, nodes, reader=False),
        login_step(ctx, ctx.lb_address, nodes, reader=True),
    ]


def _single_lb_steps(
    ctx: PhaseContext, configs: list[tuple[str, str, str]], run_args: str
) -> list[Step]:
    """The tutorial's layout: one load balancer, its node's address is the front address."""
    node = ctx.spec.lb_node.name
    lb = ctx.lb_address
    return [
        container_step(
            ctx, f"run {ctx.lb_kind} on {node} at {lb}", (node,), CONTAINER, configs, run_args
        ),
        Step(
            "wait until the load balancer answers /v2/",
            (node,),
            f"{registry_curl(ctx)} -sf -m 5 {sh(registry_url(ctx, lb))} >/dev/null",
            retry_for=90,
        ),
    ]


def _front_door_steps(
    ctx: PhaseContext, configs: list[tuple[str, str, str]], run_args: str
) -> list[Step]:
    """The load balancer on every LB node, then keepalived on each to hold the virtual IP."""
    nodes = ctx.lb_node_names
    port = ctx.spec.loadbalancer.port
    cfg = _config_dir(ctx)
    keepalived_configs = [("lb/keepalived/{node}.conf", f"{cfg}/keepalived.conf", "0644")]
    mounts = f"-v {sh(cfg + '/keepalived.conf:/etc/keepalived/keepalived.conf:ro')} "
    if ctx.spec.registry.tls:  # its check trusts the lab CA (and needs no account)
        keepalived_configs += [("secrets/ca.crt", f"{cfg}/keepalived-ca.crt", "0644")]
        mounts += f"-v {sh(cfg + '/keepalived-ca.crt:/etc/keepalived/ca.crt:ro')} "
    keepalived = (
        keepalived_configs,
        # The host's network (the node's lab NIC) and the right to put addresses on it.
        "--net=host --cap-add NET_ADMIN --cap-add NET_BROADCAST "
        f"{mounts}{sh(ctx.spec.loadbalancer.keepalived_image)}",
    )
    return [
        container_step(
            ctx, f"run {ctx.lb_kind} on {', '.join(nodes)}", nodes, CONTAINER, configs, run_args
        ),
        Step(
            "wait until every load balancer answers /v2/",
            nodes,
            f"{registry_curl(ctx)} -sf -m 5 {registry_url(ctx, f'{{node_ip}}:{port}')} >/dev/null",
            retry_for=90,
        ),
        container_step(
            ctx,
            f"run keepalived on {', '.join(nodes)} for the front address {ctx.lb_address}",
            nodes,
            KEEPALIVED_CONTAINER,
            *keepalived,
        ),
        # A node takes the address after about three missed adverts (3 s) plus skew.
        Step(
            "wait until the front address answers /v2/",
            nodes,
            f"{registry_curl(ctx)} -sf -m 5 {sh(registry_url(ctx, ctx.lb_address))} >/dev/null",
            retry_for=60,
        ),
    ]


def _backends_seen(ctx: PhaseContext, lb: str) -> str:
    """Shell on the node that runs ``lb``: send requests to it, print how many registries
    answered them."""
    rounds = 4 * len(ctx.node_names)
    requests = (
        f"for i in $(seq 1 {rounds}); do {registry_curl(ctx)} -s -o /dev/null -D - -m 5 "
        f"{sh(registry_url(ctx, lb))}; "
        "done"
    )
    if ctx.lb_kind == "traefik":
        # Traefik's access log names the backend URL of every request.
        return (
            f"{requests} >/dev/null; docker logs {CONTAINER} 2>&1 "
            f"| grep -oE 'https?://[0-9.]*:{ctx.registry_port}' | sort -u | wc -l"
        )
    return (
        f"{requests} | tr -d '\\r' | awk -F': ' 'tolower($1)==\"x-served-by\"{{print $2}}' "
        "| sort -u | wc -l"
    )


def one_holder(seen: str) -> bool:
    """``node=count ...`` from every LB node: exactly one holds the address once."""
    counts = [value.partition("=")[2] for value in seen.split()]
    return all(c.isdigit() for c in counts) and sum(map(int, counts)) == 1


def checks(ctx: PhaseContext) -> list[Check]:
    lb = ctx.lb_address
    n = len(ctx.node_names)
    puller = ctx.node_names[0]
    first = ctx.spec.lb_node.name
    front = [
        Check(
            f"{ctx.lb_kind} answers /v2/ at {lb}",
            "200",
            first,
            http_code(registry_url(ctx, lb), registry_curl(ctx)),
            settle_for=30,
        )
    ]
    if _has_vip(ctx):
        front += _front_door_checks(ctx)
    pull = Check(
        "an image pushed through the load balancer pulls through it with the same digest",
        "same digest",
        puller,
        push_login(ctx, lb)
        + same_digest(lb, PROBE_REPO, PROBE_TAG, f"{lb}/{PROBE_REPO}:{PROBE_TAG}", ctx),
        timeout=180,
    )
    if not _has_vip(ctx):
        spread = [
            Check(
                f"requests reach all {n} registries",
                str(n),
                first,
                _backends_seen(ctx, lb),
                settle_for=30,
            )
        ]
    else:  # each node's load balancer spreads its own requests
        spread = [
            Check(
                f"requests through {node}'s load balancer reach all {n} registries",
                str(n),
                node,
                _backends_seen(ctx, _own_lb(ctx, node)),
                settle_for=30,
            )
            for node in ctx.lb_node_names
        ]
    return [*front, pull, *spread]


def _front_door_checks(ctx: PhaseContext) -> list[Check]:
    vip = ctx.spec.front_address
    nodes = ctx.lb_node_names
    own = [
        Check(
            f"the load balancer on {node} answers /v2/",
            "200",
            node,
            http_code(registry_url(ctx, _own_lb(ctx, node)), registry_curl(ctx)),
            settle_for=30,
        )
        for node in nodes
    ]
    holder = Check(
        f"exactly one of {', '.join(nodes)} holds {vip}",
        "one node with the address",
        command=f"ip -o addr show to {sh(vip)} | wc -l",
        test=one_holder,
        across=nodes,
        settle_for=30,
    )
    return [*own, holder]
