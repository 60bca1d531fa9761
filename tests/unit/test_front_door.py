"""The highly available front door (labs/ha-front-door.yaml): the load balancer on several
nodes behind a virtual IP that keepalived moves; and the tutorial's single load balancer
left exactly as it was.

keepalived itself is proven on live nodes in tests/system/test_front_door.py.
"""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import validate as v
from lab.engine import Engine
from lab.nodes import Capabilities
from lab.phases import traefik, verify
from lab.phases.context import PhaseContext
from lab.remote import CommandResult
from lab.render import render
from lab.spec import KEEPALIVED_IMAGE, LabSpec, SpecError, parse_spec
from tests.helpers import REPO

HA_LAB = REPO / "labs" / "ha-front-door.yaml"
VIP = "172.17.8.100"
LOCAL = Capabilities(ipvs=False, systemd=False, fleet=False, lab_interface="eth0")


@pytest.fixture
def ha_data() -> dict[str, Any]:
    return yaml.safe_load(HA_LAB.read_text())


@pytest.fixture
def ha_spec(ha_data: dict[str, Any]) -> LabSpec:
    return parse_spec(ha_data)


def _keepalived(build: Path, node: str) -> str:
    return (build / "lb" / "keepalived" / f"{node}.conf").read_text()


def _setting(config: str, key: str) -> str:
    found = re.search(rf"^\s*{key}\s+(\S+)", config, re.M)
    assert found, f"{key} not in the config"
    return found[1]


# ------------------------------------------------------------------ the spec


def test_the_ha_lab_is_the_tutorials_layout_with_two_lb_nodes_and_a_vip(
    default_lab: dict[str, Any], ha_data: dict[str, Any], ha_spec: LabSpec
) -> None:
    assert [n.name for n in ha_spec.lb_nodes] == ["coreos1", "coreos2"]
    assert ha_spec.front_address == VIP
    assert ha_spec.loadbalancer.keepalived_image == KEEPALIVED_IMAGE
    tutorial = {k: v for k, v in default_lab.items() if k not in ("name", "loadbalancer")}
    assert {k: v for k, v in ha_data.items() if k not in ("name", "loadbalancer")} == tutorial


def test_the_default_lab_keeps_one_lb_node_and_its_address(default_lab: dict[str, Any]) -> None:
    spec = parse_spec(default_lab)
    assert [n.name for n in spec.lb_nodes] == ["coreos1"] == [spec.lb_node.name]
    assert spec.front_address == "172.17.8.101"
    assert spec.loadbalancer.vip is None and spec.loadbalancer.nodes is None


def test_the_vrrp_id_is_stable_per_lab_and_may_be_set(ha_data: dict[str, Any]) -> None:
    derived = parse_spec(ha_data).vrrp_router_id
    assert 1 <= derived <= 255 and derived == parse_spec(copy.deepcopy(ha_data)).vrrp_router_id
    ha_data["loadbalancer"]["vrrp_id"] = 7
    assert parse_spec(ha_data).vrrp_router_id == 7


@pytest.mark.parametrize(
    ("change", "line"),
    [
        ({"vip": "10.1.2.3"}, "loadbalancer.vip: '10.1.2.3' is outside the lab subnet"),
        ({"vip": "172.17.8.255"}, "loadbalancer.vip: '172.17.8.255' is outside the lab subnet"),
        ({"vip": "172.17.8.102"}, "loadbalancer.vip: '172.17.8.102' is coreos2's address"),
        ({"vip": "172.17.8.1"}, "loadbalancer.vip: '172.17.8.1' is the host's address"),
        ({"vip": "172.17.8"}, "loadbalancer.vip: '172.17.8' is not an IPv4 address"),
        ({"vip": None}, "loadbalancer.vip: is required when the load balancer runs on 2 nodes"),
        ({"nodes": ["coreos1"]}, "loadbalancer.vip: a virtual IP needs the load balancer on 2"),
        ({"nodes": ["coreos1", "coreos9"]}, "loadbalancer.nodes[1]: 'coreos9' is not a node"),
        ({"nodes": ["coreos1", "coreos1"]}, "loadbalancer.nodes[1]: 'coreos1' is listed twice"),
        ({"nodes": []}, "loadbalancer.nodes: needs at least one node"),
        ({"node": "coreos1"}, "loadbalancer.node: give loadbalancer.node or loadbalancer.nodes"),
        ({"vrrp_id": 256}, "loadbalancer.vrrp_id: 256 input should be less than or equal to 255"),
    ],
)
def test_a_bad_front_door_is_refused_in_one_line(
    ha_data: dict[str, Any], change: dict[str, Any], line: str
) -> None:
    ha_data["loadbalancer"].update(change)
    with pytest.raises(SpecError) as refused:
        parse_spec(ha_data)
    assert len(refused.value.problems) == 1, refused.value.problems
    assert refused.value.problems[0].startswith(f"lab.yaml: {line}")


def test_the_lb_port_is_claimed_on_every_lb_node(ha_data: dict[str, Any]) -> None:
    ha_data["loadbalancer"]["port"] = 6379
    with pytest.raises(SpecError) as refused:
        parse_spec(ha_data)
    assert refused.value.problems == [
        f"lab.yaml: loadbalancer.port: port 6379 on {node} is already used by redis.port"
        for node in ("coreos1", "coreos2")
    ]


# ------------------------------------------------------------- rendering


@pytest.fixture
def ha_build(ha_spec: LabSpec, tmp_path: Path) -> Path:
    return render(ha_spec, tmp_path / "build", LOCAL).build


def test_one_keepalived_config_per_lb_node_only_when_there_is_a_vip(
    ha_build: Path, default_lab: dict[str, Any], tmp_path: Path
) -> None:
    assert sorted(p.name for p in (ha_build / "lb" / "keepalived").iterdir()) == [
        "coreos1.conf",
        "coreos2.conf",
    ]
    tutorial = render(parse_spec(default_lab), tmp_path / "tutorial").build
    assert not (tutorial / "lb" / "keepalived").exists()
    assert "keepalived" not in (tutorial / ".rendered").read_text()


def test_keepalived_configs_share_the_vip_and_differ_in_priority_and_peers(
    ha_build: Path, ha_spec: LabSpec
) -> None:
    first, second = _keepalived(ha_build, "coreos1"), _keepalived(ha_build, "coreos2")
    for config, own, peer in ((first, "101", "102"), (second, "102", "101")):
        assert _setting(config, "state") == "BACKUP"
        assert re.search(r"^\s*nopreempt$", config, re.M)
        assert _setting(config, "advert_int") == "1"
        assert _setting(config, "virtual_router_id") == str(ha_spec.vrrp_router_id)
        assert _setting(config, "unicast_src_ip") == f"172.17.8.{own}"
        peers = re.search(r"unicast_peer \{([^}]*)\}", config)
        assert peers and peers[1].split() == [f"172.17.8.{peer}"]
        assert f"{VIP}/24 dev eth0" in config
        # Trusting the lab CA; the load balancer's health path needs no account.
        assert (
            "curl --cacert /etc/keepalived/ca.crt -sf -o /dev/null "
            f"-m 1 https://172.17.8.{own}:80/lab-health"
        ) in config
        # A failing check without weight means FAULT: the node gives the address up.
        assert not re.search(r"^\s*weight", config, re.M)
    assert (_setting(first, "priority"), _setting(second, "priority")) == ("150", "140")


def test_the_interface_follows_the_capabilities_not_the_provider(
    ha_spec: LabSpec, tmp_path: Path
) -> None:
    vms = render(ha_spec, tmp_path / "vms", Capabilities()).build
    config = _keepalived(vms, "coreos1")
    assert _setting(config, "interface") == "eth1" and f"{VIP}/24 dev eth1" in config
    slow = render(ha_spec, tmp_path / "slow", Capabilities(pace=4.0)).build
    assert "-m 4 https://" in _keepalived(slow, "coreos1")


def test_keepalived_configs_render_byte_identical(ha_spec: LabSpec, ha_build: Path) -> None:
    before = {n: _keepalived(ha_build, n) for n in ("coreos1", "coreos2")}
    render(ha_spec, ha_build, LOCAL)
    assert {n: _keepalived(ha_build, n) for n in before} == before


# ------------------------------------------------------------- validation


@pytest.fixture(scope="module")
def ha_validated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LabSpec, list[Any]]:
    spec = parse_spec(yaml.safe_load(HA_LAB.read_text()))
    build = render(spec, tmp_path_factory.mktemp("ha") / "build", LOCAL).build
    return build, spec, v.validate(build, spec)


def test_the_ha_lab_passes_every_validator_keepalived_included(
    ha_validated: tuple[Path, LabSpec, list[v.ValidationResult]],
) -> None:
    _, _, results = ha_validated
    assert v.all_ok(results), [(r.file, r.detail) for r in results if not r.ok]
    keepalived = {r.file: r.detail for r in results if r.validator == v.KEEPALIVED}
    assert keepalived == {
        f"lb/keepalived/coreos{n}.conf": "ok (in a network namespace with eth0)" for n in (1, 2)
    }


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("priority 140", "priority 350", "number '350' outside range [1, 255]"),
        ("    nopreempt\n", "    nopreempt\n    bogus\n", "Unknown keyword 'bogus'"),
        ("/usr/bin/curl", "/usr/bin/no-such-curl", "Disabling track script lb_answers"),
    ],
)
def test_a_broken_keepalived_config_fails_alone(
    ha_validated: tuple[Path, LabSpec, list[v.ValidationResult]],
    tmp_path: Path,
    old: str,
    new: str,
    expected: str,
) -> None:
    build, spec, _ = ha_validated
    copy_dir = tmp_path / "build"
    shutil.copytree(build, copy_dir, symlinks=True)
    target = copy_dir / "lb" / "keepalived" / "coreos2.conf"
    assert old in target.read_text()
    target.write_text(target.read_text().replace(old, new, 1))
    results = [r for r in v.validate(copy_dir, spec) if r.validator == v.KEEPALIVED]
    assert [(r.file, r.ok) for r in results] == [
        ("lb/keepalived/coreos1.conf", True),
        ("lb/keepalived/coreos2.conf", False),
    ]
    assert expected in results[1].detail


# ------------------------------------------------------------- the phase


class NodeShell:
    """Answers per node: ``answers[node][fragment]`` is the stdout of a command holding it."""

    def __init__(self, answers: dict[str, dict[str, str]] | None = None):
        self.answers = answers or {}
        self.ran: list[tuple[str, str]] = []

    def run(self, node: str, command: str, *, timeout: float, echo: bool) -> CommandResult:
        self.ran.append((node, command))
        out = next((o for f, o in self.answers.get(node, {}).items() if f in command), "")
        return CommandResult(node, command, 0, out, "", 0.01)

    def upload(self, node: str, local: Path, remote: str, mode: int) -> None:
        self.ran.append((node, f"upload {local.name} -> {remote}"))

    def user(self, node: str) -> str:
        return "root"


class NoCheckpoints:
    name = "fake"
    capabilities = LOCAL

    def snapshot_list(self) -> list[str]:
        return []


def _ctx(spec: LabSpec, build: Path) -> PhaseContext:
    from lab.secrets import ensure_secrets

    return PhaseContext(spec, build, LOCAL, ensure_secrets(build), "haproxy")


def test_the_front_address_is_the_vip_for_the_phases(ha_spec: LabSpec, ha_build: Path) -> None:
    ctx = _ctx(ha_spec, ha_build)
    assert ctx.lb_address == f"{VIP}:80"
    pushes = [s.command for s in verify.plan(ctx) if s.title.startswith("push")]
    assert pushes == [f"docker push {VIP}:80/lab/verify:latest"]


def test_the_phase_runs_the_lb_and_keepalived_on_every_lb_node(
    ha_spec: LabSpec, ha_build: Path
) -> None:
    steps = {s.title: s for s in traefik.plan(_ctx(ha_spec, ha_build))}
    lb = steps["run haproxy on coreos1, coreos2"]
    keepalived = steps[f"run keepalived on coreos1, coreos2 for the front address {VIP}:80"]
    assert lb.nodes == keepalived.nodes == ("coreos1", "coreos2")
    for flag in ("--net=host", "--cap-add NET_ADMIN", "--cap-add NET_BROADCAST",
                 "--restart unless-stopped", f"{KEEPALIVED_IMAGE}",
                 "keepalived.conf:/etc/keepalived/keepalived.conf:ro"):  # fmt: skip
        assert flag in keepalived.command
    assert [u.local.name for u in keepalived.uploads] == ["{node}.conf", "ca.crt"]
    titles = list(steps)
    assert titles.index("wait until every load balancer answers /v2/") < titles.index(
        keepalived.title
    )
    assert titles.index("wait until the front address answers /v2/") < titles.index(
        "push through the load balancer"
    )
    assert f"{VIP}:80/lab/hello-world" in steps["push through the load balancer"].command


def test_the_tutorials_phase_has_no_keepalived(default_lab: dict[str, Any], tmp_path: Path) -> None:
    spec = parse_spec(default_lab)
    ctx = _ctx(spec, render(spec, tmp_path / "build", LOCAL).build)
    commands = [s.command for s in traefik.plan(ctx)] + [c.command for c in traefik.checks(ctx)]
    assert not [c for c in commands if "keepalived" in c]
    assert [s.title for s in traefik.plan(ctx)][2] == "run haproxy on coreos1 at 172.17.8.101:80"


@pytest.mark.parametrize(
    ("holders", "passes"),
    [({"coreos1": "1", "coreos2": "0"}, True), ({"coreos1": "1", "coreos2": "1"}, False),
     ({"coreos1": "0", "coreos2": "0"}, False), ({"coreos1": "0", "coreos2": "1"}, True)],
)  # fmt: skip
def test_exactly_one_lb_node_must_hold_the_vip(
    ha_spec: LabSpec, ha_build: Path, holders: dict[str, str], passes: bool
) -> None:
    shell = NodeShell({n: {f"ip -o addr show to {VIP}": c} for n, c in holders.items()})
    engine = Engine(_ctx(ha_spec, ha_build), NoCheckpoints(), shell)  # type: ignore[arg-type]
    check = next(c for c in traefik.checks(engine.ctx) if c.across)
    result = engine.run_check(check, settle=False)
    assert result.passed is passes
    assert result.seen == f"coreos1={holders['coreos1']} coreos2={holders['coreos2']}"
    assert [node for node, _ in shell.ran] == ["coreos1", "coreos2"]


# ------------------------------------------------------------- the drills


class HolderRemote:
    """SSH as a drill uses it: only ``holder`` has the VIP on an interface."""

    def __init__(self, holder: str):
        self.holder = holder

    def run(self, node: str, command: str, **_: Any) -> CommandResult:
        held = f"2: eth0 inet {VIP}/24" if node == self.holder and VIP in command else ""
        return CommandResult(node, command, 0, held, "", 0.01)


def _drill_lab(spec: LabSpec, holder: str) -> Any:
    from lab.drills.faults import DrillLab

    return DrillLab(spec, None, HolderRemote(holder), "haproxy")  # type: ignore[arg-type]


def test_the_lb_drill_stops_the_vip_holders_lb_and_promises_a_fast_failover(
    ha_spec: LabSpec,
) -> None:
    from lab.drills.faults import lb_drill, node_drill

    assert _drill_lab(ha_spec, "coreos2").vip_holder() == "coreos2"
    target = lb_drill(_drill_lab(ha_spec, "coreos2"), None)
    assert target.action == "stop the load balancer on coreos2"
    assert [p.text for p in target.promises] == [
        "no 5 s pass without a successful request",
        "requests succeed again within 5 s of the fault",
    ]
    holder_down = node_drill(_drill_lab(ha_spec, "coreos2"), "coreos2")
    assert "at most 5% of pulls fail" in [p.text for p in holder_down.promises]
    assert not [lesson for lesson in holder_down.lessons if "load balancer" in lesson]


def test_no_payload_escapes_the_front_doors_quoting(ha_spec: LabSpec, tmp_path: Path) -> None:
    """As tests/unit/test_phase_quoting.py does for the tutorial's lab, for the fields
    only the front door puts on command lines, its across-nodes check included."""
    from tests.unit import test_phase_quoting as quoting

    result = render(ha_spec, tmp_path / "build", LOCAL)

    def commands(spec: LabSpec) -> set[str]:
        ctx = _ctx(spec, result.build)
        held = [c.command for c in traefik.checks(ctx) if c.across]
        return quoting.node_commands(spec, result.build, result.secrets) | set(held)

    baseline = commands(ha_spec)
    for field in (("loadbalancer", "vip"), ("loadbalancer", "keepalived_image")):
        for number, payload in enumerate(quoting.PAYLOADS):
            value = f"v:{payload}"
            changed = sorted(commands(quoting._bypass(ha_spec, field, value)) - baseline)
            workdir = tmp_path / f"{field[1]}-{number}"
            workdir.mkdir()
            calls = quoting.run_recorded(changed, workdir)
            where = f"{field[1]} = {value!r}"
            assert changed, where
            assert not [c for c in calls if quoting.CANARY in c[0]], f"{where} ran a command"
            assert [p.name for p in workdir.iterdir()] == ["calls.log"], f"{where} wrote a file"
            assert any(value in arg for call in calls for arg in call[1:]), where
