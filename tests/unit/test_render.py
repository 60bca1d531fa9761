"""Rendering: deterministic, atomic, secrets kept private, contents as the tutorial needs."""

from __future__ import annotations

import copy
import hashlib
import json
import stat
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import render as render_module
from lab.host.bridge import bridge_name
from lab.nodes import Capabilities
from lab.render import RenderError, render
from lab.spec import parse_spec
from tests.helpers import REPO


def _digests(build: Path) -> dict[str, str]:
    return {
        str(p.relative_to(build)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(build.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def rendered(lab_data: dict[str, Any], tmp_path: Path) -> Path:
    return render(parse_spec(lab_data), tmp_path / "build").build


def test_two_renders_are_byte_identical(lab_data: dict[str, Any], rendered: Path) -> None:
    first = _digests(rendered)
    mtimes = {p: p.stat().st_mtime_ns for p in rendered.rglob("*") if p.is_file()}
    render(parse_spec(lab_data), rendered)
    assert _digests(rendered) == first
    unchanged = {p: p.stat().st_mtime_ns for p in rendered.rglob("*") if p.is_file()}
    assert unchanged == mtimes, "an identical render should not rewrite files"


def test_secrets_are_private_and_reused(lab_data: dict[str, Any], rendered: Path) -> None:
    secrets_dir = rendered / "secrets"
    assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700
    names = sorted(p.name for p in secrets_dir.iterdir())
    assert names == [
        "ca.crt",
        "ca.key",
        "curlrc",
        "lb.htpasswd",
        "minio_access_key",
        "minio_secret_key",
        "registry.crt",
        "registry.htpasswd",
        "registry.key",
        "registry.pem",
        "registry_backend_auth",
        "registry_http_secret",
        "registry_push_password",
        "registry_read_password",
        "ssh_key",
        "ssh_key.pub",
    ]
    for path in secrets_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    before = {p.name: p.read_bytes() for p in secrets_dir.iterdir()}
    render(parse_spec(lab_data), rendered)
    assert {p.name: p.read_bytes() for p in secrets_dir.iterdir()} == before
    assert b"minio123" not in before["minio_secret_key"]


def test_secret_values_appear_only_where_a_consumer_needs_them(rendered: Path) -> None:
    secrets_dir = rendered / "secrets"
    values = [
        (secrets_dir / n).read_bytes()
        for n in ("minio_access_key", "minio_secret_key", "registry_http_secret", "ssh_key")
    ]
    for path in rendered.rglob("*"):
        if not path.is_file() or secrets_dir in path.parents:
            continue
        data = path.read_bytes()
        leaked = [v for v in values if v.strip() in data]
        if path.parent.name == "registry":
            assert len(leaked) == 3, "a registry config needs the S3 keys and the http secret"
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        else:
            assert not leaked, f"{path} holds a secret"


def test_failed_render_leaves_previous_build_untouched(
    lab_data: dict[str, Any], rendered: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _digests(rendered)
    original = render_module._Renderer.text

    def broken(self: Any, template: str, **extra: object) -> str:
        if template.endswith("nginx.conf.j2"):
            raise RenderError(f"{template}: boom")
        return original(self, template, **extra)

    monkeypatch.setattr(render_module._Renderer, "text", broken)
    lab_data["nodes"][0]["memory"] = 4096  # would change the Vagrantfile
    with pytest.raises(RenderError):
        render(parse_spec(lab_data), rendered)
    assert _digests(rendered) == before


def test_files_of_removed_nodes_are_dropped(lab_data: dict[str, Any], rendered: Path) -> None:
    assert (rendered / "coreos3.ign").exists()
    lab_data["nodes"] = lab_data["nodes"][:2]
    lab_data["minio"]["instances"][2]["node"] = "coreos2"
    lab_data["minio"]["instances"][2]["port"] = 9005
    render(parse_spec(lab_data), rendered)
    assert not (rendered / "coreos3.ign").exists()
    assert not (rendered / "registry" / "coreos3.yml").exists()


def test_minio_stack_places_each_instance_by_label(rendered: Path) -> None:
    stack = yaml.safe_load((rendered / "stacks/minio.yaml").read_text())
    assert float(stack["version"]) >= 3.2
    assert stack["networks"]["minio_distributed"] == {"driver": "overlay", "attachable": True}
    assert stack["secrets"] == {"access_key": {"external": True}, "secret_key": {"external": True}}
    for n in range(1, 5):
        service = stack["services"][f"minio{n}"]
        assert service["command"] == "server http://minio{1...4}/export"
        assert service["deploy"]["placement"]["constraints"] == [f"node.labels.minio{n} == true"]
        assert service["ports"][0]["published"] == 9000 + n
        assert service["volumes"] == [f"/mnt/docker_reg/minio/f{n}:/export"]
        assert service["environment"] == {
            "MINIO_ROOT_USER_FILE": "access_key",
            "MINIO_ROOT_PASSWORD_FILE": "secret_key",
        }
        assert "/minio/health/live" in " ".join(service["healthcheck"]["test"])


def test_no_ipvs_renders_host_ports_and_dnsrr(lab_data: dict[str, Any], tmp_path: Path) -> None:
    build = render(parse_spec(lab_data), tmp_path / "b", Capabilities(ipvs=False)).build
    stack = yaml.safe_load((build / "stacks/minio.yaml").read_text())
    for service in stack["services"].values():
        assert service["ports"][0]["mode"] == "host"
        assert service["deploy"]["endpoint_mode"] == "dnsrr"


def test_docker0_stays_out_of_the_lab_subnet(lab_data: dict[str, Any], tmp_path: Path) -> None:
    # The default lab's 172.17.8.0/24 lies in Docker's default 172.17.0.0/16: containers
    # on docker0 would look for the other nodes on their own bridge.
    def bip(subnet: str) -> str:
        data = copy.deepcopy(lab_data)
        data["network"] = {"subnet": f"{subnet}.0/24"}
        for i, node in enumerate(data["nodes"], start=1):
            node["ip"] = f"{subnet}.{10 + i}"
        build = render(parse_spec(data), tmp_path / subnet).build
        return json.loads((build / "files/daemon.json").read_text())["bip"]

    assert bip("172.17.8") == "172.18.0.1/16"
    assert bip("10.232.9") == "172.17.0.1/16"


def test_emulated_nodes_get_minio_health_checks_scaled_by_their_pace(
    lab_data: dict[str, Any], tmp_path: Path
) -> None:
    build = render(parse_spec(lab_data), tmp_path / "b", Capabilities(pace=4.0)).build
    stack = yaml.safe_load((build / "stacks/minio.yaml").read_text())
    for service in stack["services"].values():
        check = service["healthcheck"]
        timing = (check["interval"], check["timeout"], check["start_period"])
        assert timing == ("8s", "40s", "240s")
        assert service["environment"]["STANDIN_TIMEOUT_SCALE"] == "4.0"  # its peer timeouts


def test_each_registry_uses_its_own_minio_and_shares_the_secret(rendered: Path) -> None:
    configs = {
        n: yaml.safe_load((rendered / f"registry/coreos{n}.yml").read_text()) for n in (1, 2, 3)
    }
    for n, config in configs.items():
        s3 = config["storage"]["s3"]
        assert s3["regionendpoint"] == f"http://172.17.8.10{n}:900{n}"
        assert s3["bucket"] == "docker" and s3["secure"] is False and s3["v4auth"] is True
        assert config["storage"]["redirect"] == {"disable": True}
        assert config["storage"]["cache"] == {"blobdescriptor": "redis"}
        assert config["redis"]["addr"] == f"172.17.8.10{n}:6379"
        assert "forcepathstyle" not in s3
    assert len({c["http"]["secret"] for c in configs.values()}) == 1


def test_ignition_gives_each_node_its_settings(rendered: Path) -> None:
    config = json.loads((rendered / "coreos2.ign").read_text())
    assert config["ignition"]["version"].startswith("3.")
    pub = (rendered / "secrets/ssh_key.pub").read_text().strip()
    assert config["passwd"]["users"] == [{"name": "core", "sshAuthorizedKeys": [pub]}]
    files = {
        f["path"]: urllib.parse.unquote(f["contents"]["source"].removeprefix("data:,"))
        for f in config["storage"]["files"]
    }
    assert files["/etc/hostname"] == "coreos2\n"
    daemon = json.loads(files["/etc/docker/daemon.json"])
    assert daemon["registry-mirrors"] == ["http://172.17.8.1:5000"]
    assert "alias dps=" in files["/etc/profile.d/docker-aliases.sh"]
    units = {u["name"]: u for u in config["systemd"]["units"]}
    assert {"date.service", "date.timer", "mnt-docker_reg.mount"} <= set(units)
    assert "Where=/mnt/docker_reg" in units["mnt-docker_reg.mount"]["contents"]


def test_cloud_config_matches_ignition(rendered: Path) -> None:
    text = (rendered / "coreos3.cloud-config.yml").read_text()
    assert text.startswith("#cloud-config\n")
    config = yaml.safe_load(text)
    assert config["hostname"] == "coreos3"
    paths = [f["path"] for f in config["write_files"]]
    certs = sorted(f"/etc/docker/certs.d/172.17.8.10{n}:{port}/ca.crt" for n in (1, 2, 3)
                   for port in ((80, 5000) if n == 1 else (5000,)))  # fmt: skip
    assert paths == ["/etc/docker/daemon.json", "/etc/profile.d/docker-aliases.sh", *certs]
    names = [u["name"] for u in config["coreos"]["units"]]
    assert names == ["docker.service", "mnt-docker_reg.mount", "date.service", "date.timer"]


def test_vagrantfile_defines_every_node(rendered: Path) -> None:
    text = (rendered / "Vagrantfile").read_text()
    for n in (1, 2, 3):
        assert f"{{ name: 'coreos{n}', ip: '172.17.8.10{n}', memory: 2048, cpus: 1 }}" in text
    assert "check_guest_additions = false" in text
    assert 'type: "nfs"' in text and "'/mnt/docker_reg'" in text


def test_vagrantfile_libvirt_block_runs_the_debian_box_on_the_lab_bridge(rendered: Path) -> None:
    text = (rendered / "Vagrantfile").read_text()
    spec = parse_spec(yaml.safe_load((REPO / "lab.yaml").read_text()))
    bridge = bridge_name(spec)
    assert f"LAB_BRIDGE = '{bridge}'" in text  # the bridge the mirror listens on
    assert "LIBVIRT_BOX = 'ha-registry-lab/bookworm-docker'" in text
    assert "LIBVIRT_DRIVER = 'qemu'" in text and "lv.driver = LIBVIRT_DRIVER" in text
    assert "lv.default_prefix = 'ha-registry-'" in text  # domains: <lab>-<node>
    assert 'override.ssh.username = "vagrant"' in text
    assert "GUEST_UNITS = ['mnt-docker_reg.mount', 'date.service', 'date.timer']" in text
    assert "ENABLED_UNITS = ['mnt-docker_reg.mount', 'date.timer']" in text
    assert 'File.join(LAB_DIR, "logs", "serial-#{node[:name]}.log")' in text
    # its own management network: vagrant-libvirt's shared one goes with its creator
    assert "MANAGEMENT_NETWORK = 'ha-registry-vagrant'" in text
    assert "lv.management_network_address = MANAGEMENT_SUBNET" in text


def test_libvirt_management_subnet_avoids_the_lab_subnet(lab_data: dict[str, Any]) -> None:
    name, subnet = render_module.libvirt_management_network(parse_spec(lab_data))
    lab_data["network"] = {"subnet": subnet}
    for i, node in enumerate(lab_data["nodes"], start=1):
        node["ip"] = subnet.replace(".0/24", f".{10 + i}")
    moved = render_module.libvirt_management_network(parse_spec(lab_data))[1]
    assert name == "ha-registry-vagrant" and moved != subnet


def test_libvirt_units_mount_the_userspace_nfs_server_without_a_portmapper(
    rendered: Path,
) -> None:
    mount = (rendered / "units/libvirt/mnt-docker_reg.mount").read_text()
    assert f"What=172.17.8.1:{rendered / 'nfs'}" in mount
    assert (
        "Options=vers=3,proto=tcp,port=2049,mountport=20048,mountproto=tcp,"
        "nolock,soft,timeo=100,addr=172.17.8.1"
    ) in mount
    for unit in ("date.service", "date.timer"):  # the same as Flatcar's
        assert (rendered / "units/libvirt" / unit).read_bytes() == (
            rendered / "units/systemd" / unit
        ).read_bytes()


def test_load_balancers_list_every_registry(rendered: Path) -> None:
    haproxy = (rendered / "lb/haproxy.cfg").read_text()
    nginx = (rendered / "lb/nginx.conf").read_text()
    dynamic = yaml.safe_load((rendered / "lb/traefik-dynamic.yml").read_text())
    servers = dynamic["http"]["services"]["registry"]["loadBalancer"]["servers"]
    for n in (1, 2, 3):
        tls = " ssl verify required ca-file /etc/lab-tls/ca.crt"
        assert f"server coreos{n} 172.17.8.10{n}:5000{tls}\n" in haproxy + "\n"
        assert f"server 172.17.8.10{n}:5000" in nginx
        assert {"url": f"https://172.17.8.10{n}:5000"} in servers


def test_every_load_balancer_fails_over_within_seconds(rendered: Path) -> None:
    """Checks every second with 1 s timeouts (a silent registry counts as down), reads
    retried on another registry, and nothing held for minutes by a registry that froze."""
    haproxy = (rendered / "lb/haproxy.cfg").read_text()
    assert "default-server check inter 1s fastinter 500ms downinter 1s fall 2 rise 2" in haproxy
    # Sessions are not cut when a registry is marked down: those still connecting to it
    # are redispatched after the 1 s connect timeout, which cutting would turn into errors.
    assert "shutdown-sessions" not in haproxy
    for line in ("timeout check 1s", "timeout connect 1s", "timeout server 30s",
                 "option redispatch", "retry-on conn-failure", "disable-l7-retry unless METH_GET"):
        assert line in haproxy, line
    nginx = (rendered / "lb/nginx.conf").read_text()
    for line in ("max_fails=1 fail_timeout=3s", "proxy_connect_timeout 1s;",
                 "proxy_read_timeout 15s;", "proxy_next_upstream error timeout"):
        assert line in nginx, line
    dynamic = yaml.safe_load((rendered / "lb/traefik-dynamic.yml").read_text())
    balancer = dynamic["http"]["services"]["registry"]["loadBalancer"]
    check = {k: v for k, v in balancer["healthCheck"].items() if k != "headers"}
    assert check == {"path": "/v2/", "interval": "1s", "timeout": "1s"}
    assert dynamic["http"]["middlewares"]["retry-elsewhere"]["retry"]["attempts"] == 2
    transport = dynamic["http"]["serversTransports"][balancer["serversTransport"]]
    assert transport["forwardingTimeouts"]["dialTimeout"] == "1s"


def test_a_registry_whose_storage_fails_says_so_within_seconds(rendered: Path) -> None:
    config = yaml.safe_load((rendered / "registry/coreos2.yml").read_text())
    assert config["health"]["storagedriver"] == {"enabled": True, "interval": "2s", "threshold": 2}


def test_units_for_fleet_and_systemd(rendered: Path) -> None:
    fleet = (rendered / "units/registry.service").read_text()
    plain = (rendered / "units/systemd/registry.service").read_text()
    assert "[X-Fleet]\nGlobal=true" in fleet and "[Install]" not in fleet
    assert "WantedBy=multi-user.target" in plain and "X-Fleet" not in plain
