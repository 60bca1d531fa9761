"""Phase swarm: a three-manager Docker Swarm and an attachable overlay network."""

from __future__ import annotations

from lab.phases.common import sh
from lab.phases.context import PhaseContext
from lab.plan import Check, Step, count_equals

TITLE = "a Docker Swarm where every node is a manager"
EXPLAIN = """\
The first node initialises the swarm, advertising its lab address. The others
join with the join token, and are then promoted to managers: with three
managers the swarm keeps a quorum when any one node fails (the tutorial's
fail-over note). An attachable overlay network lets services and plain
containers on different nodes talk to each other. With --demo, the tutorial's
busybox service is created and scaled across the nodes."""

NETWORK = "lab-net"
DEMO_SERVICE = "busybox"
SWARM_ACTIVE = "docker info --format '{{.Swarm.LocalNodeState}}' | grep -qx active"


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
            f"create the attachable overlay network {NETWORK}",
            (leader,),
            f"docker network create --driver overlay --attachable {NETWORK}",
            guard=f"docker network inspect {NETWORK} >/dev/null 2>&1",
        )
    )
    if ctx.demo:
        steps += [
            Step(
                "busybox demo: create a service",
                (leader,),
                f"docker service create --detach --name {DEMO_SERVICE} --network {NETWORK} "
                f"--init --endpoint-mode {sh(ctx.caps.endpoint_mode, ctx.spec.demo.busybox_image)} "
                "sleep 86400",
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
            f"network {NETWORK} is an attachable swarm overlay",
            "overlay swarm true",
            ctx.leader,
            f"docker network inspect -f '{{{{.Driver}}}} {{{{.Scope}}}} {{{{.Attachable}}}}' "
            f"{NETWORK}",
        ),
    ]
