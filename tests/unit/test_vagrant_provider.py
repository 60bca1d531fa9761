"""The Vagrant provider, proven as far as a host without VirtualBox allows.

Three kinds of evidence, none of which mocks python-vagrant:

- the REAL ``vagrant`` CLI (Debian's 2.3.4) on the rendered Vagrantfile, with a
  stand-in ``VBoxManage`` on PATH that answers the few queries Vagrant's
  VirtualBox driver makes (version, VM state, forwarded SSH port, snapshots):
  real ``vagrant status`` and ``vagrant ssh-config`` output reaches our parsers;
- the real CLI with no VirtualBox at all: what the user sees;
- a recording ``vagrant`` first on PATH: the exact command lines python-vagrant
  runs for up / snapshot save / restore / delete / halt / destroy, and the
  shared-directory copy that goes with every checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from invoke.exceptions import Exit

from lab.cli import friendly_errors
from lab.errors import ProviderError, UnknownName
from lab.nodes import NodeAccess
from lab.paths import nfs_export_path
from lab.providers.vagrant import (
    VagrantProvider,
    node_access,
    snapshot_names,
    split_ssh_config,
)
from lab.render import render
from lab.spec import LabSpec, load_spec
from tests.helpers import REPO

MACHINES = ["coreos1", "coreos2", "coreos3"]

# What VirtualBox would answer, per VM uuid; the state lives in a JSON file.
STUB_VBOXMANAGE = """#!{python}
import json, os, sys
state = json.load(open(os.environ["STUB_VBOX_STATE"]))
args = sys.argv[1:]
if args[:1] == ["--version"]:
    print("7.0.14r161095")
elif args[:1] == ["showvminfo"] and args[1] in state:
    vm = state[args[1]]
    print(f'name="{{vm["name"]}}"')
    print(f'VMState="{{vm["state"]}}"')
    print('nic1="nat"')
    print(f'Forwarding(0)="ssh,tcp,127.0.0.1,{{vm["port"]}},,22"')
elif args[:1] == ["snapshot"] and args[2:3] == ["list"] and args[1] in state:
    for index, name in enumerate(state[args[1]]["snapshots"]):
        print(f'SnapshotName{{"-%d" % index if index else ""}}="{{name}}"')
elif args[:2] == ["list", "vms"]:
    for uuid, vm in state.items():
        print(f'"{{vm["name"]}}" {{{{{{uuid}}}}}}')
"""

# Records argv, cwd and the provider env of every call; keeps snapshot names like vagrant.
FAKE_VAGRANT = """#!{python}
import json, os, sys
args = sys.argv[1:]
log_dir = os.environ["FAKE_VAGRANT_DIR"]
with open(os.path.join(log_dir, "calls.jsonl"), "a") as log:
    record = {{"argv": args, "cwd": os.getcwd(),
              "default_provider": os.environ.get("VAGRANT_DEFAULT_PROVIDER")}}
    log.write(json.dumps(record) + "\\n")
snap_file = os.path.join(log_dir, "snapshots.json")
snaps = json.load(open(snap_file)) if os.path.exists(snap_file) else {{}}
positional = [a for a in args[2:] if not a.startswith("-")]
if args[:2] == ["snapshot", "save"]:
    name = positional[-1]
    for machine in positional[:-1] or ["coreos1", "coreos2", "coreos3"]:  # no name: all
        snaps.setdefault(machine, [])
        if name not in snaps[machine]:
            snaps[machine].append(name)
        print(f"==> {{machine}}: Snapshotting the machine as '{{name}}'...")
elif args[:2] == ["snapshot", "delete"]:
    machine, name = args[-2], args[-1]
    snaps[machine].remove(name)
    print(f"==> {{machine}}: Deleting the snapshot '{{name}}'...")
elif args[:2] == ["snapshot", "list"]:
    for machine, names in snaps.items():
        print(f"1700000000,{{machine}},ui,output,==> {{machine}}: ")
        for name in sorted(names):
            print(f"1700000000,{{machine}},ui,detail,{{name}}")
elif args[:1] == ["snapshot"]:
    print(f"==> {{args[-2]}}: Restoring the snapshot '{{args[-1]}}'...")
else:
    print(f"==> coreos1: {{' '.join(args)}}")
json.dump(snaps, open(snap_file, "w"))
"""

# `vagrant ssh-config` as the real CLI prints it (captured here from Vagrant 2.3.4 with
# the stand-in VirtualBox); quoting as Vagrant does for a key path with a space.
RECORDED_SSH_CONFIG = """Host coreos1
  HostName 127.0.0.1
  User core
  Port 2222
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile "/home/a user/.vagrant.d/insecure_private_key"
  IdentitiesOnly yes
  LogLevel FATAL

Host coreos2
  HostName 127.0.0.1
  User core
  Port 2200
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile /root/.vagrant.d/insecure_private_key
  IdentitiesOnly yes
  LogLevel FATAL

"""


def _write_script(path: Path, template: str) -> Path:
    path.write_text(template.format(python=sys.executable))
    path.chmod(0o755)
    return path


def _real_vagrant() -> str:
    found = shutil.which("vagrant")
    if found is None:
        pytest.fail("the vagrant CLI is missing: apt-get install vagrant")
    return found


def _path_without(tool: str) -> str:
    """PATH minus every directory holding ``tool``: this host as if it lacked it."""
    dirs = os.environ["PATH"].split(os.pathsep)
    return os.pathsep.join(d for d in dirs if not (Path(d) / tool).exists())


@pytest.fixture
def spec() -> LabSpec:
    return load_spec(REPO / "lab.yaml")


@pytest.fixture
def build(spec: LabSpec, tmp_path: Path) -> Path:
    return render(spec, tmp_path / "build").build


@pytest.fixture
def stub_virtualbox(
    build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, dict[str, object]]:
    """A VBoxManage stand-in first on PATH; the test fills the returned state, then saves it."""
    _real_vagrant()
    bin_dir = tmp_path / "vbox-bin"
    bin_dir.mkdir()
    _write_script(bin_dir / "VBoxManage", STUB_VBOXMANAGE)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STUB_VBOX_STATE", str(tmp_path / "vbox-state.json"))
    return {}


def _create_vms(build: Path, state: dict[str, dict[str, object]], vms: dict[str, int]) -> None:
    """Make Vagrant believe ``vms`` (name -> SSH port) exist and run; save the stub's state."""
    for index, (name, port) in enumerate(vms.items(), start=1):
        uuid = f"00000000-0000-0000-0000-00000000000{index}"
        machine_dir = build / ".vagrant" / "machines" / name / "virtualbox"
        machine_dir.mkdir(parents=True, exist_ok=True)
        (machine_dir / "id").write_text(uuid)
        state[uuid] = {
            "name": f"ha-registry-{name}",
            "state": "running",
            "port": port,
            "snapshots": ["after-swarm", "after-labels"] if name != "coreos3" else ["after-swarm"],
        }
    Path(os.environ["STUB_VBOX_STATE"]).write_text(json.dumps(state))


@pytest.fixture
def fake_vagrant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A recording `vagrant` (and a VBoxManage that exists) first on PATH; returns the log dir."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    _write_script(bin_dir / "vagrant", FAKE_VAGRANT)
    _write_script(bin_dir / "VBoxManage", "#!/bin/sh\necho 7.0.14r161095\n")
    log_dir = tmp_path / "fake-vagrant"
    log_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_VAGRANT_DIR", str(log_dir))
    return log_dir


def _calls(log_dir: Path) -> list[dict[str, object]]:
    log = log_dir / "calls.jsonl"
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    log.unlink(missing_ok=True)
    return calls


def _argvs(log_dir: Path) -> list[list[str]]:
    return [call["argv"] for call in _calls(log_dir)]  # type: ignore[misc]


# --- the real vagrant CLI ------------------------------------------------------------


def test_status_comes_from_real_vagrant_status(
    spec: LabSpec, build: Path, stub_virtualbox: dict[str, dict[str, object]]
) -> None:
    _create_vms(build, stub_virtualbox, {"coreos1": 2222})

    states = VagrantProvider(spec, build).status()

    assert states == {"coreos1": "running", "coreos2": "not_created", "coreos3": "not_created"}


def test_nodes_come_from_real_vagrant_ssh_config(
    spec: LabSpec, build: Path, stub_virtualbox: dict[str, dict[str, object]]
) -> None:
    _create_vms(build, stub_virtualbox, {"coreos1": 2222, "coreos2": 2200, "coreos3": 2201})

    nodes = VagrantProvider(spec, build).nodes()

    assert [(n.name, n.address, n.port, n.user) for n in nodes] == [
        ("coreos1", "127.0.0.1", 2222, "core"),
        ("coreos2", "127.0.0.1", 2200, "core"),
        ("coreos3", "127.0.0.1", 2201, "core"),
    ]
    # insert_key = false in the Vagrantfile: Vagrant's shared insecure key.
    assert {n.key_file.name for n in nodes} == {"insecure_private_key"}


def test_snapshot_list_needs_every_vm_and_the_shared_copy(
    spec: LabSpec, build: Path, stub_virtualbox: dict[str, dict[str, object]]
) -> None:
    _create_vms(build, stub_virtualbox, {"coreos1": 2222, "coreos2": 2200, "coreos3": 2201})
    provider = VagrantProvider(spec, build)
    assert provider.snapshot_list() == []  # VM snapshots alone are no checkpoint

    for name in ("after-swarm", "after-labels"):
        (build / "snapshots" / name / "shared").mkdir(parents=True)

    # coreos3 lacks after-labels (see _create_vms): only after-swarm is a whole checkpoint.
    assert provider.snapshot_list() == ["after-swarm"]


def test_a_failing_vagrant_command_is_one_line(
    spec: LabSpec, build: Path, stub_virtualbox: dict[str, dict[str, object]]
) -> None:
    _create_vms(build, stub_virtualbox, {"coreos1": 2222})  # coreos2, coreos3 not created

    with pytest.raises(ProviderError) as caught:
        VagrantProvider(spec, build).nodes()

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("vagrant ssh-config failed (exit 1): ")
    assert "not yet ready for SSH" in message


def test_real_vagrant_without_virtualbox_cannot_work(build: Path) -> None:
    """The premise of the provider's own check: what vagrant itself says here."""
    vagrant = _real_vagrant()
    env = {k: v for k, v in os.environ.items() if k != "VAGRANT_DEFAULT_PROVIDER"}
    env["PATH"] = _path_without("VBoxManage")
    plain = subprocess.run([vagrant, "status"], cwd=build, env=env, capture_output=True, text=True)
    # setup.sh installs vagrant-libvirt, which vagrant then picks by itself: the reason
    # the provider pins VAGRANT_DEFAULT_PROVIDER for every command but `up`.
    assert plain.returncode == 0, plain.stderr
    assert "not created (libvirt)" in plain.stdout

    env["VAGRANT_DEFAULT_PROVIDER"] = "virtualbox"
    forced = subprocess.run([vagrant, "status"], cwd=build, env=env, capture_output=True, text=True)
    assert forced.returncode == 1
    assert "Vagrant could not detect VirtualBox" in forced.stderr


def test_up_without_virtualbox_is_one_line_naming_the_fix(
    spec: LabSpec, build: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _real_vagrant()
    monkeypatch.setenv("PATH", _path_without("VBoxManage"))

    with pytest.raises(ProviderError) as caught:
        VagrantProvider(spec, build).up()

    assert str(caught.value) == (
        "VirtualBox is not installed (VBoxManage not found): "
        "install VirtualBox 7, or use --provider local"
    )
    # Through the CLI's error handling that is one line and exit code 2.
    with pytest.raises(Exit) as exited:
        friendly_errors(VagrantProvider(spec, build).up)()
    assert exited.value.code == 2
    assert exited.value.message == f"error: {caught.value}"


def test_missing_vagrant_names_the_package(
    spec: LabSpec, build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "only-vbox"
    bin_dir.mkdir()
    _write_script(bin_dir / "VBoxManage", "#!/bin/sh\necho 7.0.14r161095\n")
    monkeypatch.setenv("PATH", str(bin_dir))

    with pytest.raises(ProviderError, match=r"apt-get install vagrant"):
        VagrantProvider(spec, build).status()


# --- parsers on recorded real output -------------------------------------------------


def test_ssh_config_parser_on_recorded_output() -> None:
    blocks = split_ssh_config(RECORDED_SSH_CONFIG)

    assert list(blocks) == ["coreos1", "coreos2"]
    assert node_access("coreos1", blocks["coreos1"]) == NodeAccess(
        name="coreos1",
        address="127.0.0.1",
        port=2222,
        user="core",
        key_file=Path("/home/a user/.vagrant.d/insecure_private_key"),
    )
    assert node_access("coreos2", blocks["coreos2"]).port == 2200


def test_snapshot_list_parser_on_recorded_output() -> None:
    # `vagrant snapshot list --machine-readable` as Vagrant 2.3.4 printed it here.
    recorded = (
        "1795805355,coreos1,metadata,provider,virtualbox\n"
        "1795805356,coreos1,ui,output,==> coreos1: \n"
        "1795805356,coreos1,ui,detail,after-labels\n"
        "1795805356,coreos1,ui,detail,after-swarm\n"
        "1795805356,coreos2,ui,info,==> coreos2: VM not created. Moving on...\n"
    )
    assert snapshot_names(recorded) == {"coreos1": {"after-labels", "after-swarm"}}


# --- the command lines python-vagrant runs -----------------------------------------


def test_command_lines_for_up_snapshots_and_destroy(
    spec: LabSpec, build: Path, fake_vagrant: Path
) -> None:
    provider = VagrantProvider(spec, build)

    provider.up()
    assert _argvs(fake_vagrant) == [["up", "--provider=virtualbox"]]

    provider.snapshot_save("after-swarm")
    assert _argvs(fake_vagrant) == [
        ["snapshot", "save", "--force", machine, "after-swarm"] for machine in MACHINES
    ]

    provider.snapshot_restore("after-swarm")
    assert _argvs(fake_vagrant) == [
        ["snapshot", "list", "--machine-readable"],
        *(
            ["snapshot", "restore", "--no-provision", "--no-start", machine, "after-swarm"]
            for machine in MACHINES
        ),
        ["up", "--no-provision", "--provider=virtualbox"],
    ]

    provider.snapshot_delete("after-swarm")
    assert _argvs(fake_vagrant) == [
        ["snapshot", "list", "--machine-readable"],
        *(["snapshot", "delete", machine, "after-swarm"] for machine in MACHINES),
    ]

    provider.halt()
    provider.destroy()
    calls = _calls(fake_vagrant)
    assert [call["argv"] for call in calls] == [["halt"], ["destroy", "--force"]]
    # Every command runs in the lab's build dir, with the chosen provider as default.
    assert {(call["cwd"], call["default_provider"]) for call in calls} == {
        (str(build), "virtualbox")
    }


def test_up_passes_another_vm_provider(spec: LabSpec, build: Path, fake_vagrant: Path) -> None:
    VagrantProvider(spec, build, vm_provider="libvirt").up()

    assert _calls(fake_vagrant) == [
        {"argv": ["up", "--provider=libvirt"], "cwd": str(build), "default_provider": "libvirt"}
    ]


def test_restoring_a_missing_checkpoint_lists_the_existing_ones(
    spec: LabSpec, build: Path, fake_vagrant: Path
) -> None:
    provider = VagrantProvider(spec, build)
    provider.snapshot_save("after-swarm")
    _calls(fake_vagrant)

    with pytest.raises(ProviderError, match=r"no checkpoint named 'after-minio'.*after-swarm"):
        provider.snapshot_restore("after-minio")
    assert _argvs(fake_vagrant) == [["snapshot", "list", "--machine-readable"]]


def test_checkpoint_rolls_back_the_shared_directory(
    spec: LabSpec, build: Path, fake_vagrant: Path
) -> None:
    provider = VagrantProvider(spec, build)
    shared = nfs_export_path(spec, build)
    (shared / "docker").mkdir()
    (shared / "docker" / "blob").write_text("before")

    provider.snapshot_save("after-bucket")
    assert (build / "snapshots" / "after-bucket" / "shared" / "docker" / "blob").exists()
    (shared / "docker" / "blob").write_text("after")
    (shared / "stray").write_text("written after the checkpoint")

    provider.snapshot_restore("after-bucket")

    assert (shared / "docker" / "blob").read_text() == "before"
    assert not (shared / "stray").exists()
    assert provider.snapshot_list() == ["after-bucket"]

    provider.snapshot_delete("after-bucket")
    assert not (build / "snapshots" / "after-bucket").exists()
    assert provider.snapshot_list() == []


def test_up_output_reaches_the_terminal(
    spec: LabSpec, build: Path, fake_vagrant: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    VagrantProvider(spec, build).up()

    # The fake prints "==> coreos1: <argv>" on stdout; python-vagrant passes it through.
    assert "==> coreos1: up --provider=virtualbox" in capfd.readouterr().out


# ------------------------------------------------------------------ the libvirt path
# Real VMs are exercised by tests/test_lab_libvirt.py; these are the parts that need none.

RECORDED_BOX_LIST = """\
1795817140,,ui,info,ha-registry-lab/bookworm-docker (libvirt%!(VAGRANT_COMMA) 0)
1795817140,,box-name,ha-registry-lab/bookworm-docker
1795817140,,box-provider,libvirt
1795817140,,box-version,0
1795817140,,box-info,inputs,df6fc01fa1bec9463d998661252aedc24edcfcd8ed707a7f04adbe970981343d
1795817140,,box-name,flatcar-stable
1795817140,,box-provider,virtualbox
"""


def test_box_list_parser_on_recorded_output() -> None:
    from lab.providers.libvirt.provider import box_providers

    assert box_providers(RECORDED_BOX_LIST) == {
        "ha-registry-lab/bookworm-docker": {"libvirt"},
        "flatcar-stable": {"virtualbox"},
    }


def test_libvirt_provider_is_recorded_as_libvirt(spec: LabSpec, build: Path) -> None:
    from lab.providers import PROVIDERS, make_provider
    from lab.providers.libvirt.provider import LibvirtProvider

    provider = make_provider("libvirt", spec, build)
    assert "libvirt" in PROVIDERS
    assert isinstance(provider, LibvirtProvider) and isinstance(provider, VagrantProvider)
    assert (provider.name, provider.vm_provider) == ("libvirt", "libvirt")
    assert provider.capabilities.systemd and not provider.capabilities.fleet
    assert provider.domains == [f"ha-registry-{m}" for m in MACHINES]  # lv.default_prefix


def test_qemu_must_enter_the_build_directory(tmp_path: Path) -> None:
    from lab.providers.libvirt.provider import not_traversable

    private = tmp_path / "private"
    (private / "build").mkdir(parents=True)
    private.chmod(0o700)
    assert not_traversable(private / "build") == private
    private.chmod(0o755)
    assert not_traversable(private / "build") in (None, *private.parents)


def test_libvirt_checkpoints_pause_every_domain_save_with_vagrant_and_revert_with_virsh(
    spec: LabSpec, build: Path, fake_vagrant: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint is one `vagrant snapshot save` of the paused domains; a restore
    reverts every domain with virsh (paused, all at once, no Vagrant start-up), puts
    the shared directory back, then resumes them."""
    from lab.providers.libvirt import host as libvirt_host
    from lab.providers.libvirt.provider import LibvirtProvider

    provider = LibvirtProvider(spec, build)
    states = dict.fromkeys(provider.domains, "running")
    virsh_calls: list[tuple[str, ...]] = []

    def fake_virsh(*args: str, check: bool = True, timeout: float = 120) -> str:
        virsh_calls.append(args)
        if args[0] == "domstate":
            return states[args[1]] + "\n"
        if args[0] == "snapshot-list":
            return "after-nodes\nafter-swarm\n"
        if args[0] == "snapshot-revert":
            assert args[2:] == ("after-swarm", "--paused")
        states[args[1]] = {"suspend": "paused", "resume": "running"}.get(args[0], "paused")
        return ""

    events: list[str] = []
    monkeypatch.setattr(libvirt_host, "virsh", fake_virsh)
    monkeypatch.setattr(provider, "set_clocks", lambda: events.append("clocks"))
    monkeypatch.setattr(
        provider.nfs, "restart_with", lambda change: (events.append("nfs"), change())
    )

    provider.snapshot_save("after-swarm")
    assert [c["argv"] for c in _calls(fake_vagrant)] == [
        ["snapshot", "save", "--force", "after-swarm"]
    ]
    assert [c[0] for c in virsh_calls if c[0] != "domstate"] == ["suspend"] * 3 + ["resume"] * 3
    assert events == ["clocks"]

    virsh_calls.clear()
    provider.snapshot_restore("after-swarm")
    assert _calls(fake_vagrant) == []  # a restore starts no Vagrant
    changes = [c[0] for c in virsh_calls if c[0] not in ("domstate", "snapshot-list")]
    assert changes == ["suspend"] * 3 + ["snapshot-revert"] * 3 + ["resume"] * 3
    reverted = {c[1] for c in virsh_calls if c[0] == "snapshot-revert"}
    assert reverted == set(provider.domains)
    assert events == ["clocks", "nfs", "clocks"]
    assert all(state == "running" for state in states.values())


def test_pool_volume_names_from_recorded_vol_list() -> None:
    from lab.providers.libvirt.provider import pool_volumes

    recorded = (
        " Name                Path\n"
        "----------------------------------------------------\n"
        " vmlab-coreos1.img   /var/lib/libvirt/images/vmlab-coreos1.img\n"
        " boxboot.img         /var/lib/libvirt/images/boxboot.img\n"
        "\n"
    )
    assert pool_volumes(recorded) == ["vmlab-coreos1.img", "boxboot.img"]


def test_power_off_is_virtualbox_poweroff_and_power_on_boots_without_provisioning(
    spec: LabSpec, build: Path, fake_vagrant: Path
) -> None:
    """A drill cuts one VM's power (`halt --force`: VirtualBox poweroff) and boots it again."""
    provider = VagrantProvider(spec, build)
    provider.power_off("coreos2")
    provider.power_on("coreos2")
    assert _argvs(fake_vagrant) == [
        ["halt", "coreos2", "--force"],
        ["up", "coreos2", "--no-provision", "--provider=virtualbox"],
    ]
    with pytest.raises(UnknownName, match="'coreos9' is not a node"):
        provider.power_off("coreos9")


def test_libvirt_power_off_destroys_the_domain_and_power_on_starts_it(
    spec: LabSpec, build: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lab.providers.libvirt import host as libvirt_host
    from lab.providers.libvirt.provider import LibvirtProvider

    provider = LibvirtProvider(spec, build)
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(libvirt_host, "virsh", lambda *args, **_: calls.append(args) or "")
    monkeypatch.setattr(provider, "_wait_for_ssh", lambda node: calls.append(("ssh", node)))
    monkeypatch.setattr(provider, "set_clocks", lambda: calls.append(("clocks",)))
    provider.power_off("coreos3")
    provider.power_on("coreos3")
    domain = f"{spec.name}-coreos3"
    assert calls == [("destroy", domain), ("start", domain), ("ssh", "coreos3"), ("clocks",)]
