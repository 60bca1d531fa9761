"""Phase swarm: a three-manager Docker Swarm and the tutorial's overlay network."""

from __future__ import annotations

from lab.phases.common import sh
from lab.phases.context import PhaseContext
from lab.plan import ABSENT, Check, Step, TraineeCommand, count_equals

TITLE = "a Docker Swarm where every node is a manager"
TUTORIAL = "Docker Swarm Configuration on CoreOS; Docker helpful examples; Destroying the cluster"
EXPLAIN = """\
The first node initialises the swarm, advertising its lab address. The others
join with the join token, and are then promoted to managers: with three
managers the swarm keeps a quorum when any one node fails (the tutorial's
fail-over note). The overlay network `services` lets services on different
nodes talk to each other. With --demo, the kit also runs the tutorial's nginx
service (2 replicas) and its busybox examples."""

DEMO_SERVICE = "busybox"
NGINX_SERVICE = "nginx"
NGINX_REPLICAS = 2
NGINX_PORT = 8080  # the tutorial's 80 is the load balancer's on coreos1
SWARM_ACTIVE = "docker info --format '{{.Swarm.LocalNodeState}}' | grep -qx active"


def network(ctx: PhaseContext) -> str:
    return ctx.spec.swarm.network


def encrypted(ctx: PhaseContext) -> bool:
    return ctx.spec.swarm.encrypted and ctx.caps.esp


def network_create(ctx: PhaseContext) -> str:
    """The tutorial's command; `--opt encrypted` only where the kernel has ESP."""
    opt = " --opt encrypted" if encrypted(ctx) else ""
    return (
        f"docker network create --driver overlay --subnet {sh(ctx.spec.swarm.subnet)}{opt} "
        f"{sh(network(ctx))}"
    )


def nginx_create(ctx: PhaseContext) -> str:
    publish = (
        f"--publish {NGINX_PORT}:80"
        if ctx.caps.ipvs
        else f"--publish mode=host,published={NGINX_PORT},target=80 --endpoint-mode dnsrr"
    )
    return (
        f"docker service create --detach --replicas {NGINX_REPLICAS} --name {NGINX_SERVICE} "
        f"--network {sh(network(ctx))} {publish} {sh(ctx.spec.loadbalancer.nginx_image)}"
    )


def busybox_create(ctx: PhaseContext) -> str:
    return (
        f"docker service create --detach --name {DEMO_SERVICE} --network {sh(network(ctx))} "
        f"--init --endpoint-mode {sh(ctx.caps.endpoint_mode, ctx.spec.demo.busybox_image)} "
        "sleep 86400"
    )


def plan(ctx: PhaseContext) -> list[Step]:
    leader = ctx.leader
    others = tuple(n for n in ctx.node_names if n != leader)
    managers = len(ctx.node_names)
    steps = [
        Step(
            f"initialise the swarm on {leader}",
            (leader,),
            "docker swarm init --advertise-addr {node_ip} --listen-addr {node_ip}:2377",
            guard=SWARM_ACTIVE,
        ),
        Step(
            "read the join token",
            (leader,),
            "docker swarm join-token -q worker",
            capture="join_token",
        ),
    ]
    if others:
        steps += [
            Step(
                "join the other nodes",
                others,
                f"docker swarm join --token {{join_token}} --advertise-addr {{node_ip}} "
                f"{sh(ctx.ip(leader) + ':2377')}",
                guard=SWARM_ACTIVE,
            ),
            Step(
                "promote them to managers (fail-over needs a quorum of managers)",
                (leader,),
                f"docker node promote {sh(*others)}",
                guard=f"test $(docker node ls --filter role=manager -q | wc -l) -eq {managers}",
            ),
        ]
    steps.append(
        Step(
            f"create the overlay network {network(ctx)} ({ctx.spec.swarm.subnet}"
            + (", encrypted)" if encrypted(ctx) else ", not encrypted: no ESP in this kernel)"),
            (leader,),
            network_create(ctx),
            guard=f"docker network inspect {sh(network(ctx))} >/dev/null 2>&1",
        )
    )
    if ctx.demo:
        steps += [
            Step(
                f"nginx: a service of {NGINX_REPLICAS} replicas on {network(ctx)}",
                (leader,),
                nginx_create(ctx),
                guard=f"docker service inspect {NGINX_SERVICE} >/dev/null 2>&1",
            ),
            Step(
                "busybox demo: create a service",
                (leader,),
                busybox_create(ctx),
                guard=f"docker service inspect {DEMO_SERVICE} >/dev/null 2>&1",
            ),
            Step(
                "busybox demo: scale it across the nodes",
                (leader,),
                f"docker service scale --detach {DEMO_SERVICE}={ctx.spec.demo.replicas}",
            ),
            Step(
                "busybox demo: where do the tasks run?",
                (leader,),
                f"docker service ps {DEMO_SERVICE} --format '{{{{.Name}}}} {{{{.Node}}}} "
                "{{.CurrentState}}'",
            ),
        ]
    return steps


def overlay_networks() -> str:
    """Shell: the swarm's own overlay networks (not ingress, not a stack's), or ABSENT."""
    return (
        "nets=$(docker network ls --filter driver=overlay --filter scope=swarm "
        "--format '{{.Name}} {{.Labels}}' | grep -v '^ingress ' "
        "| grep -v 'com.docker.stack.namespace' | cut -d' ' -f1 | sort | paste -sd' '); "
        f'echo "${{nets:-{ABSENT} no overlay network besides ingress}}"'
    )


def checks(ctx: PhaseContext) -> list[Check]:
    n = len(ctx.node_names)
    node_list = "docker node ls --format '{{.Hostname}} {{.Status}} {{.ManagerStatus}}'"
    # Asked on every node, not only the leader: a manager answers only once its raft
    # log holds the other members, and a checkpoint taken before that restores a
    # node that can never find the leader again.
    return [
        *(
            Check(
                f"{n} Ready managers, as {node} sees them",
                str(n),
                node,
                f"timeout 10 {node_list} | grep -cE ' Ready (Leader|Reachable)$'",
                test=count_equals(n),
                settle_for=60,
            )
            for node in ctx.node_names
        ),
        Check(
            "exactly one Leader",
            "1",
            ctx.leader,
            f"{node_list} | grep -c ' Leader$'",
            settle_for=30,
        ),
        Check(
            f"an overlay network for services exists (the tutorial's: {network(ctx)})",
            "an overlay network",
            ctx.leader,
            overlay_networks(),
            test=lambda seen: bool(seen.strip()) and not Check.absent(seen),
            settle_for=10,
            hint="docker network ls --filter driver=overlay",
        ),
        *_demo_checks(ctx),
    ]


def _demo_checks(ctx: PhaseContext) -> list[Check]:
    if not ctx.demo:
        return []
    return [
        Check(
            f"the nginx service runs {NGINX_REPLICAS} of {NGINX_REPLICAS} replicas",
            f"{NGINX_REPLICAS}/{NGINX_REPLICAS}",
            ctx.leader,
            f"docker service ls --filter name={NGINX_SERVICE} --format '{{{{.Name}}}} "
            f"{{{{.Replicas}}}}' | awk '$1==\"{NGINX_SERVICE}\" {{print $2}}' "
            f"| grep . || echo '{ABSENT} no service named {NGINX_SERVICE}'",
            test=lambda seen: seen.startswith(f"{NGINX_REPLICAS}/{NGINX_REPLICAS}"),
            settle_for=60,
            hint=f"docker service ps {NGINX_SERVICE}",
        )
    ]


def trainee(ctx: PhaseContext) -> list[TraineeCommand]:
    leader, others = ctx.leader, [n for n in ctx.node_names if n != ctx.leader]
    first = ctx.ip(leader)
    cmds = [
        TraineeCommand(
            "start the swarm on the first node, on its lab address (the nodes have "
            "more than one interface)",
            f"docker swarm init --advertise-addr {first}",
            leader,
        ),
        TraineeCommand(
            "print the command that joins a node", "docker swarm join-token worker", leader
        ),
        *(
            TraineeCommand(
                "join with the token printed above",
                f"docker swarm join --token <token> {first}:2377",
                node,
            )
            for node in others
        ),
        TraineeCommand(
            "make them managers too, so that the swarm survives losing any one node "
            "(promote runs on a manager)",
            f"docker node promote {' '.join(others)}",
            leader,
        ),
        TraineeCommand("three Ready managers, one Leader", "docker node ls", leader),
        TraineeCommand(
            "the overlay network for the services"
            + ("" if encrypted(ctx) else " (no --opt encrypted: this kernel has no IPsec ESP)"),
            network_create(ctx),
            leader,
        ),
        TraineeCommand(
            f"a service of {NGINX_REPLICAS} nginx replicas on it (port {NGINX_PORT}: 80 is "
            "the load balancer's later)",
            nginx_create(ctx),
            leader,
        ),
        TraineeCommand(
            "the services and where their tasks run",
            f"docker service ls; docker service ps {NGINX_SERVICE}",
            leader,
        ),
        TraineeCommand("the networks", "docker network ls", leader),
        TraineeCommand("optional (--demo): the busybox example", busybox_create(ctx), leader),
        TraineeCommand(
            "optional (--demo): scale it across the nodes and see where it runs",
            f"docker service scale {DEMO_SERVICE}={ctx.spec.demo.replicas}; "
            f"docker service ps {DEMO_SERVICE}",
            leader,
        ),
        TraineeCommand(
            "read only: how a node leaves the swarm (this would undo the lab)",
            "docker swarm leave",
            ctx.node_names[-1],
            run=False,
        ),
        TraineeCommand(
            "read only: the last manager leaves with --force",
            "docker swarm leave --force",
            leader,
            run=False,
        ),
    ]
    return cmds


def differences(ctx: PhaseContext) -> list[str]:
    diffs = [
        "`docker node promote` runs on coreos1: promotion needs a manager (the tutorial "
        "says to run it on node2 and node3)",
        f"nginx publishes port {NGINX_PORT}, not 80: the load balancer takes port 80 on "
        f"{ctx.spec.lb_node.name} later",
        "the kit runs nginx and the busybox examples only with --demo; a trainee types them",
    ]
    if not encrypted(ctx):
        diffs.append(
            "the network is not encrypted (--opt encrypted left off): these nodes' kernel "
            "has no IPsec ESP, and encrypted overlays would pass no traffic"
        )
    if not ctx.caps.ipvs:
        diffs.append(
            "no IPVS in these nodes' kernel: services publish in host mode with "
            "--endpoint-mode dnsrr instead of the routing mesh"
        )
    return diffs
