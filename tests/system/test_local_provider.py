"""The local provider against the real thing: namespaces, dockerd, sshd, swarm, mirror.

Needs root on Linux with the Debian packages listed in lab/providers/local.py; a
missing one fails the test with the package to install (never a skip).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import paramiko
import pytest

from lab.errors import ProviderError
from lab.images import LOCAL_BUILD_LABEL
from lab.providers.local import LocalProvider, dockerd
from lab.remote import HostKeyChanged, Remote, known_hosts_file
from lab.spec import load_spec
from tests.helpers import REPO
from tests.system.local_lab import (
    form_swarm,
    leftovers,
    local_lab_data,
    manager_count,
    wait_for,
    write_lab,
)

# The mirror's busybox: Debian's busybox-static, tagged by its version (lab/images.py).
BUSYBOX = "busybox:1.35"


@pytest.fixture(scope="module")
def local_provider(local_lab_spec, local_lab_images):
    spec, build = local_lab_spec
    provider = LocalProvider(spec, build)
    provider.destroy()  # a lab left by an interrupted earlier run
    try:
        provider.up()
        yield provider
    finally:
        provider.destroy()


@pytest.fixture(scope="module")
def local_remote(local_provider):
    remote = Remote(local_provider.nodes(), known_hosts_file(local_provider.build), printer=None)
    yield remote
    remote.close()


@pytest.fixture(scope="module")
def local_swarm(local_provider, local_remote):
    form_swarm(local_remote, local_provider)
    return local_remote


def test_three_nodes_come_up(local_provider):
    assert local_provider.status() == {f"coreos{i}": "running" for i in (1, 2, 3)}
    assert local_provider.capabilities.ipvs is False
    assert local_provider.capabilities.publish_mode == "host"
    assert local_provider.capabilities.endpoint_mode == "dnsrr"


def test_paramiko_reaches_each_node_and_docker_shows_its_hostname(local_remote):
    results = local_remote.run_all("hostname && docker info --format '{{.Name}}'", stream=False)
    for name, result in results.items():
        assert result.ok, result.stderr
        assert result.stdout.split() == [name, name]
        assert result.duration > 0 and result.node == name


def test_output_is_streamed_with_the_node_name(local_provider):
    lines: list[str] = []
    nodes = local_provider.nodes()
    with Remote(nodes, known_hosts_file(local_provider.build), printer=lines.append) as remote:
        result = remote.run("coreos2", "echo one; echo two >&2; exit 3")
    assert result.exit_code == 3 and result.stdout == "one\n" and result.stderr == "two\n"
    assert sorted(lines) == ["coreos2 | one", "coreos2 | two"]


def test_a_command_times_out(local_remote):
    result = local_remote.run("coreos1", "sleep 10", timeout=1, stream=False)
    assert result.timed_out and result.exit_code == 124 and result.duration < 5


def test_host_keys_are_recorded_then_enforced(local_provider, local_remote):
    local_remote.run_all("true", stream=False)
    known = known_hosts_file(local_provider.build)
    keys = paramiko.HostKeys(str(known))
    for node in local_provider.nodes():
        assert keys.lookup(node.address), f"{node.name} not recorded"
    # a different key for coreos2 on record: the connection must refuse, naming the node
    forged = paramiko.HostKeys()
    for host in keys:
        for kind, key in keys.lookup(host).items():
            forged.add(host, kind, key)
    forged.add("10.213.7.12", "ssh-ed25519", paramiko.Ed25519Key.from_private_key_file(
        str(local_provider.nodes()[0].key_file)))  # fmt: skip
    tampered = known.with_name("known_hosts.tampered")
    forged.save(str(tampered))
    with (
        Remote(local_provider.nodes(), tampered, printer=None) as remote,
        pytest.raises(HostKeyChanged, match="coreos2"),
    ):
        remote.run("coreos2", "true")


def test_nodes_have_private_paths_and_share_the_nfs_export(local_provider, local_remote):
    local_remote.run_all(
        lambda n: (
            f"mkdir -p /etc/docker/registry && echo {n.name} > /etc/docker/registry/who"
            f" && echo {n.name} > /mnt/docker_reg/from-{n.name} && echo {n.name} > ~/home-file"
        ),
        stream=False,
        check=True,
    )
    results = local_remote.run_all(
        "cat /etc/docker/registry/who ~/home-file; ls /mnt/docker_reg; ip route", stream=False
    )
    for name, result in results.items():
        lines = result.stdout.split()
        assert lines[:2] == [name, name]
        assert {"from-coreos1", "from-coreos2", "from-coreos3"} <= set(lines)
        assert "default" not in result.stdout
    assert (local_provider.shared_dir / "from-coreos3").read_text() == "coreos3\n"
    assert not Path("/etc/docker/registry/who").exists()


def test_three_manager_swarm_forms_through_ssh(local_swarm):
    assert manager_count(local_swarm, "coreos2") == 3


def test_pulls_come_from_the_mirror(local_provider, local_swarm):
    result = local_swarm.run("coreos3", f"docker pull {BUSYBOX}", stream=False, timeout=120)
    assert result.ok, result.stderr
    labels = local_swarm.run(
        "coreos3",
        "docker image inspect --format '{{json .Config.Labels}}' " + BUSYBOX,
        stream=False,
    )
    assert f'"{LOCAL_BUILD_LABEL}":"true"' in labels.stdout
    mirror_log = local_provider.host.mirror.log.read_text()
    manifest = f"/v2/library/busybox/manifests/{BUSYBOX.split(':')[1]}"
    assert "10.213.7.13" in mirror_log and manifest in mirror_log


def test_overlay_traffic_crosses_nodes(local_swarm):
    local_swarm.run("coreos1", "docker network create -d overlay --attachable crossnet",
                    stream=False, check=True)  # fmt: skip
    local_swarm.run_all(
        lambda n: f"docker run -d --init --name c-{n.name} --network crossnet {BUSYBOX} sleep 600",
        stream=False,
        check=True,
    )
    address = local_swarm.run(
        "coreos3",
        "docker inspect -f '{{(index .NetworkSettings.Networks \"crossnet\").IPAddress}}'"
        " c-coreos3",
        stream=False,
        check=True,
    ).stdout.strip()
    ping = local_swarm.run("coreos1", f"docker exec c-coreos1 ping -c 2 -W 2 {address}",
                           stream=False, timeout=30)  # fmt: skip
    assert ping.ok and " 0% packet loss" in ping.stdout, ping.stdout + ping.stderr
    by_name = local_swarm.run("coreos2", "docker exec c-coreos2 ping -c 1 -W 2 c-coreos1",
                              stream=False, timeout=30)  # fmt: skip
    assert by_name.ok, by_name.stdout + by_name.stderr
    local_swarm.run_all("docker rm -f c-$(hostname)", stream=False, check=True)


def _service_running(remote: Remote, name: str, replicas: int) -> bool:
    result = remote.run("coreos1", f"docker service ls --filter name={name} "
                        "--format '{{.Name}} {{.Replicas}}'", stream=False)  # fmt: skip
    return result.ok and f"{name} {replicas}/{replicas}" in result.stdout


def test_snapshot_restore_brings_a_removed_service_back(local_provider, local_swarm):
    local_swarm.run("coreos1", "docker service create -d --name demo --init --replicas 3 "
                    f"{BUSYBOX} sleep 3600", stream=False, check=True)  # fmt: skip
    wait_for("demo 3/3", lambda: _service_running(local_swarm, "demo", 3), 60)
    local_provider.snapshot_save("with-demo")
    assert "with-demo" in local_provider.snapshot_list()
    wait_for("three managers after the checkpoint",
             lambda: manager_count(local_swarm, "coreos1") == 3, 60)  # fmt: skip
    local_swarm.run("coreos1", "docker service rm demo", stream=False, check=True)
    assert not _service_running(local_swarm, "demo", 3)

    local_provider.snapshot_restore("with-demo")
    for node in ("coreos1", "coreos2", "coreos3"):
        local_swarm.forget(node)  # the sshds were restarted
    wait_for("three managers after restore", lambda: manager_count(local_swarm, "coreos1") == 3,
             90)  # fmt: skip
    wait_for("demo back at 3/3", lambda: _service_running(local_swarm, "demo", 3), 90)

    local_provider.snapshot_delete("with-demo")
    assert "with-demo" not in local_provider.snapshot_list()
    with pytest.raises(ProviderError, match="no snapshot"):
        local_provider.snapshot_restore("with-demo")


def test_a_killed_node_leaves_quorum_and_rejoins(local_provider, local_swarm):
    local_provider.kill_node("coreos3")
    local_swarm.forget("coreos3")
    wait_for("coreos3 Down", lambda: "coreos3 Down" in local_swarm.run(
        "coreos1", "docker node ls --format '{{.Hostname}} {{.Status}}'", stream=False).stdout,
        30)  # fmt: skip
    # two of three managers still have quorum: the swarm still accepts changes
    local_swarm.run("coreos2", "docker network create -d overlay quorum-check", stream=False,
                    check=True)  # fmt: skip
    local_provider.start_node("coreos3")
    # Seen to take over 60 s when CI shared the two cores with a running lab.
    wait_for("coreos3 back", lambda: manager_count(local_swarm, "coreos1") == 3, 180)
    assert local_swarm.run("coreos3", "hostname", stream=False).stdout.strip() == "coreos3"


def test_destroy_after_success_leaves_nothing(local_provider):
    local_provider.destroy()
    assert leftovers(local_provider) == []
    local_provider.destroy()  # twice is fine
    assert leftovers(local_provider) == []


# ----------------------------------------------------- failure injected mid-up


def _second_lab(tmp_path: Path, name: str, subnet: str) -> LocalProvider:
    spec = load_spec(write_lab(tmp_path, local_lab_data(name=name, subnet=subnet)))
    return LocalProvider(spec, tmp_path / "build")


def test_destroy_after_an_up_that_failed_halfway(tmp_path, monkeypatch, local_lab_images):
    provider = _second_lab(tmp_path, "hrl-fail", "10.213.8")
    real_start = dockerd.start

    def start_or_fail(node, spec):
        real_start(node, spec)
        if node.name == "coreos2":
            raise ProviderError("injected failure after coreos2's dockerd started")

    monkeypatch.setattr(dockerd, "start", start_or_fail)
    try:
        with pytest.raises(ProviderError, match="injected"):
            provider.up()
        assert leftovers(provider), "the failed up should have left something to clean"
    finally:
        monkeypatch.undo()
        provider.destroy()
    assert leftovers(provider) == []


def test_destroy_after_the_up_task_was_killed(tmp_path, local_lab_images):
    provider = _second_lab(tmp_path, "hrl-kill", "10.213.9")
    script = (
        "import sys; from pathlib import Path; from lab.spec import load_spec; "
        "from lab.providers.local import LocalProvider; "
        f"LocalProvider(load_spec({str(tmp_path / 'lab.yaml')!r}), Path({str(provider.build)!r}))"
        ".up()"
    )
    up = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    try:
        pidfile = provider.layouts[0].dockerd_pidfile
        wait_for("the first dockerd of the killed up", pidfile.exists, 30)
        os.kill(up.pid, signal.SIGKILL)
        up.wait()
        time.sleep(0.5)
        assert leftovers(provider)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        provider.destroy()
    assert leftovers(provider) == []


def test_not_root_is_one_line_naming_the_fix(tmp_path, monkeypatch):
    provider = _second_lab(tmp_path, "hrl-noroot", "10.213.10")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ProviderError) as info:
        provider.up()
    assert "needs root" in str(info.value) and "\n" not in str(info.value)


def test_a_missing_package_is_named(tmp_path, monkeypatch):
    provider = _second_lab(tmp_path, "hrl-nopkg", "10.213.11")
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing is found
    monkeypatch.setattr("lab.host.proc.TOOL_PATHS", {})
    with pytest.raises(ProviderError, match="apt-get install docker.io"):
        provider.up()
