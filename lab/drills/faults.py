"""The drills: what each breaks, how it heals, what the design promises meanwhile,
and what the tutorial's layout cannot promise (said as a lesson, not a failure).

MinIO's numbers: N drives in one erasure set with parity N/2 need N/2 drives to read
and N/2 + 1 to write (HA-FACTS.md). Swarm's three managers keep quorum with two.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from lab.drills.report import Promise
from lab.errors import UnknownName, UsageError
from lab.providers.base import Provider
from lab.remote import Remote
from lab.spec import LabSpec

DRILLS = ("registry", "redis", "storage", "node", "leader", "lb")
DESCRIPTIONS = {
    "registry": "stop one node's registry",
    "redis": "stop one node's Redis",
    "storage": "stop one MinIO instance",
    "node": "power one node off hard, then back on",
    "leader": "power off the swarm leader's node, then back on",
    "lb": "stop the load balancer (with --node: power off that node)",
}
REGISTRY_CONTAINER = "registry"
REDIS_CONTAINER = "redis"
LB_CONTAINER = "lb"


@dataclass
class DrillTarget:
    """One drill, resolved against a lab: what it does to which node."""

    drill: str
    node: str
    action: str  # "stop the registry on coreos3"
    inject: Callable[[], None]
    heal: Callable[[], None]
    heal_hint: str  # what a user types to heal by hand
    healed: str = "healed"  # what healing did, in words
    promises: list[Promise] = field(default_factory=list)
    lessons: list[str] = field(default_factory=list)
    powered_off: str | None = None  # the node whose power is cut while the fault lasts


@dataclass
class DrillLab:
    """What a drill needs of the lab: its spec, its nodes' power, and SSH to them."""

    spec: LabSpec
    provider: Provider
    remote: Remote
    lb_kind: str

    def docker(self, node: str, *args: str, timeout: float = 60) -> str:
        command = " ".join(["docker", *args])
        return self.remote.run(node, command, timeout=timeout, stream=False, check=True).stdout

    def manager(self, avoid: str | None = None) -> str:
        """A manager to run swarm commands on, not the node that is down."""
        return next(n.name for n in self.spec.nodes if n.name != avoid)

    def vip_holder(self) -> str | None:
        """The load balancer node that holds the virtual IP now, if any does."""
        vip = self.spec.loadbalancer.vip
        for node in lb_nodes(self.spec) if vip else []:
            held = self.remote.run(node, f"ip -o addr show to {vip}", timeout=10, stream=False)
            if held.ok and held.stdout.strip():
                return node
        return None

    def leader(self, avoid: str | None = None) -> str | None:
        command = "docker node ls --format '{{.Hostname}} {{.ManagerStatus}}'"
        out = self.remote.run(self.manager(avoid), command, timeout=10, stream=False)
        for line in out.stdout.splitlines():
            name, _, status = line.partition(" ")
            if status.strip() == "Leader":
                return name
        return None


# ------------------------------------------------------------------ the layout


def lb_nodes(spec: LabSpec) -> list[str]:
    return [n.name for n in spec.lb_nodes]


def drives_on(spec: LabSpec, node: str) -> int:
    return Counter(i.node for i in spec.minio.instances)[node]


def write_quorum(spec: LabSpec) -> int:
    return len(spec.minio.instances) // 2 + 1


def read_quorum(spec: LabSpec) -> int:
    return len(spec.minio.instances) // 2


def layout_lessons(spec: LabSpec) -> list[str]:
    """The single points of failure of this layout, in plain words."""
    lessons = []
    if len(lb_nodes(spec)) == 1:
        lb = lb_nodes(spec)[0]
        lessons.append(
            f"The load balancer runs only on {lb}: when it or {lb} fails, nothing answers at "
            "the front address (each node's registry still does at its own address). "
            "loadbalancer.nodes and loadbalancer.vip put it on several nodes behind a VIP."
        )
    n = len(spec.minio.instances)
    for node in spec.nodes:
        held = drives_on(spec, node.name)
        if n - held < write_quorum(spec):
            lessons.append(
                f"{node.name} holds {held} of MinIO's {n} drives: writes need "
                f"{write_quorum(spec)}, so losing {node.name} stops every push until it is back "
                f"(reads need {read_quorum(spec)} and go on)."
            )
    return lessons


def _survives_node(spec: LabSpec, node: str) -> tuple[bool, bool, list[str]]:
    """(front door survives, writes survive, lessons) when ``node`` is lost."""
    lessons = []
    front = node not in lb_nodes(spec) or len(lb_nodes(spec)) > 1
    if not front:
        lessons.append(f"{node} runs the only load balancer: the front door is down until "
                       f"{node} is back.")  # fmt: skip
    left = len(spec.minio.instances) - drives_on(spec, node)
    writes = left >= write_quorum(spec)
    if not writes:
        lessons.append(
            f"{node} holds {drives_on(spec, node)} MinIO drives: {left} are left, writes need "
            f"{write_quorum(spec)}, so pushes fail until it is back."
        )
    return front, writes, lessons


# ------------------------------------------------------------------ the drills


def at_most_failed_pulls(share: float) -> Promise:
    return Promise(f"at most {share:.0%} of pulls fail", lambda n: n.failed_pull_share <= share)


def at_most_failed_pushes(share: float) -> Promise:
    return Promise(f"at most {share:.0%} of pushes fail", lambda n: n.failed_push_share <= share)


def pulls_recover_within(seconds: float) -> Promise:
    return Promise(
        f"pulls succeed again within {seconds:.0f} s of the fault",
        lambda n: n.pull_recovery_after_fault is not None
        and n.pull_recovery_after_fault <= seconds,
    )


def no_gap_longer_than(seconds: float) -> Promise:
    return Promise(f"no {seconds:.0f} s pass without a successful request",
                   lambda n: n.longest_gap <= seconds)  # fmt: skip


def recovers_within(seconds: float) -> Promise:
    return Promise(
        f"requests succeed again within {seconds:.0f} s of the fault",
        lambda n: n.recovery_after_fault is not None and n.recovery_after_fault <= seconds,
    )


def default_node(spec: LabSpec) -> str:
    """Neither the first node (swarm's first manager, MinIO's first drives) nor the
    load balancer's: the node whose loss the layout is meant to survive."""
    avoid = {spec.nodes[0].name, *lb_nodes(spec)}
    candidates = [n.name for n in spec.nodes if n.name not in avoid]
    return (candidates or [spec.nodes[-1].name])[-1]


def resolve(name: str, lab: DrillLab, node: str | None) -> DrillTarget:
    if name not in DRILLS:
        raise UnknownName(f"no drill {name!r}; drills: {', '.join(DRILLS)}, all")
    if node is not None and node not in [n.name for n in lab.spec.nodes]:
        raise UnknownName(f"{node!r} is not a node of lab {lab.spec.name}")
    return BUILDERS[name](lab, node)


def _container(lab: DrillLab, drill: str, node: str, container: str, what: str) -> DrillTarget:
    return DrillTarget(
        drill, node, f"stop {what} on {node}",
        inject=lambda: lab.docker(node, "stop", "-t", "1", container),
        heal=lambda: lab.docker(node, "start", container),
        heal_hint=f"inv lab.ssh {node} -- docker start {container}",
        healed=f"started {what} on {node} again",
    )  # fmt: skip


def registry_drill(lab: DrillLab, node: str | None) -> DrillTarget:
    node = node or default_node(lab.spec)
    target = _container(lab, "registry", node, REGISTRY_CONTAINER, "the registry")
    target.promises = [at_most_failed_pulls(0.01)]
    return target


def redis_drill(lab: DrillLab, node: str | None) -> DrillTarget:
    node = node or default_node(lab.spec)
    target = _container(lab, "redis", node, REDIS_CONTAINER, "Redis")
    # Without its cache a registry asks the storage for every blob: slower, but it works.
    target.promises = [at_most_failed_pulls(0.01), at_most_failed_pushes(0.05)]
    return target


def storage_drill(lab: DrillLab, node: str | None) -> DrillTarget:
    node = node or default_node(lab.spec)
    instances = [i for i in lab.spec.minio.instances if i.node == node]
    if not instances:
        raise UsageError(f"no MinIO instance runs on {node}")
    service = f"{lab.spec.minio.stack}_{instances[0].name}"
    manager = lab.manager(avoid=None)
    return DrillTarget(
        "storage", node, f"stop MinIO instance {instances[0].name} on {node}",
        inject=lambda: lab.docker(manager, "service", "scale", "--detach", f"{service}=0"),
        heal=lambda: lab.docker(manager, "service", "scale", "--detach", f"{service}=1"),
        heal_hint=f"inv lab.ssh {manager} -- docker service scale {service}=1",
        healed=f"scaled {service} back to 1",
        promises=[at_most_failed_pulls(0.01), recovers_within(15)],
        lessons=[f"{node}'s registry stores through {instances[0].name}: it answers 503 until "
                 "its storage is back, and the load balancer sends its share elsewhere."],
    )  # fmt: skip


def _power_drill(lab: DrillLab, drill: str, node: str, why: str) -> DrillTarget:
    front, writes, lessons = _survives_node(lab.spec, node)
    promises = [Promise("the swarm keeps a leader (quorum of managers)",
                        lambda n: n.leaderless_seconds <= 15)]  # fmt: skip
    if front:
        # Without write quorum pushes stop until the node is back (the lesson): then
        # only pulls are promised to recover.
        promises += [at_most_failed_pulls(0.05),
                     recovers_within(15) if writes else pulls_recover_within(15)]  # fmt: skip
    return DrillTarget(
        drill, node, f"power off {node}{why}",
        inject=lambda: lab.provider.power_off(node),
        heal=lambda: lab.provider.power_on(node),
        heal_hint="inv lab.up  (boots every node that is off; passed phases are skipped)",
        healed=f"powered {node} on again",
        promises=promises, lessons=lessons, powered_off=node,
    )  # fmt: skip


def node_drill(lab: DrillLab, node: str | None) -> DrillTarget:
    return _power_drill(lab, "node", node or default_node(lab.spec), "")


def leader_drill(lab: DrillLab, node: str | None) -> DrillTarget:
    leader = node or lab.leader()
    if leader is None:
        raise UsageError("the swarm has no leader now: heal the lab first (inv phase swarm)")
    return _power_drill(lab, "leader", leader, " (the swarm leader)")


def lb_drill(lab: DrillLab, node: str | None) -> DrillTarget:
    several = len(lb_nodes(lab.spec)) > 1
    if node is not None:
        target = _power_drill(lab, "lb", node, " (a load balancer's node)")
    else:
        # Behind a VIP only the holder's load balancer carries the traffic: stop that one.
        holder = lab.vip_holder() if several else None
        where = holder or lb_nodes(lab.spec)[0]
        target = _container(lab, "lb", where, LB_CONTAINER, "the load balancer")
    if several:
        # The VIP moves in about 3 advert intervals: a few seconds of failures, whatever
        # the drill's length, so the promise is about time, not a share of requests.
        quorum = [p for p in target.promises if "leader" in p.text]  # a node's power cut
        target.promises = [*quorum, no_gap_longer_than(5), recovers_within(5)]
    else:
        target.promises = [p for p in target.promises if "leader" in p.text]
        target.lessons = [
            f"One load balancer ({lb_nodes(lab.spec)[0]}): every request through the front "
            "address fails until it is back. Each node's registry stays reachable at its own "
            "address; a VIP over several load balancers (loadbalancer.vip) removes this single "
            "point of failure."
        ]
    return target


BUILDERS: dict[str, Callable[[DrillLab, str | None], DrillTarget]] = {
    "registry": registry_drill,
    "redis": redis_drill,
    "storage": storage_drill,
    "node": node_drill,
    "leader": leader_drill,
    "lb": lb_drill,
}
