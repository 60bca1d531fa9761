"""Spec -> build/<lab>/: every file the lab needs, rendered from the templates.

Rendering is pure and deterministic: the whole tree is rendered in memory
first (a failing template writes nothing), then each file is replaced
atomically, and files a previous render wrote but this one does not are
removed. The same spec and secrets give byte-identical files.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import os
import shlex
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import jinja2
import yaml

from lab.errors import UsageError
from lab.host.bridge import bridge_name
from lab.nodes import Capabilities
from lab.paths import REPO_ROOT, build_dir, nfs_export_path
from lab.secrets import (
    PUSH_USER,
    READ_USER,
    REGISTRY_TLS_NAME,
    LabSecrets,
    RegistryTLS,
    ensure_registry_tls,
    ensure_secrets,
)
from lab.spec import LabSpec

IGNITION_VERSION = "3.3.0"
# The userspace NFS server (nfs-ganesha) the libvirt path runs on the lab bridge.
USERSPACE_NFS_PORT = 2049
USERSPACE_MOUNT_PORT = 20048
MANIFEST = ".rendered"
KEEPALIVED_DIR = "lb/keepalived"  # one config per load balancer node: <node>.conf
SECRET_MODE = 0o600
PUBLIC_MODE = 0o644
# Where the load balancer's container sees the lab's CA, certificate and accounts, and
# where a registry's container sees its certificate and its htpasswd.
LB_TLS_DIR = "/etc/lab-tls"
REGISTRY_TLS_DIR = "/etc/docker/registry/tls"
# With TLS: what keepalived asks a load balancer, no account needed (200: a registry is up).
LB_HEALTH_PATH = "/lab-health"


@dataclass(frozen=True)
class RenderedFile:
    path: str  # relative to the build directory
    content: bytes
    mode: int = PUBLIC_MODE


@dataclass(frozen=True)
class NodeFile:
    """A file placed on every node by its Ignition / cloud-config."""

    path: str
    content: str
    mode: int = PUBLIC_MODE


@dataclass(frozen=True)
class NodeUnit:
    name: str
    content: str
    enabled: bool


class RenderError(UsageError):
    """A template could not be rendered; nothing was written."""


# ------------------------------------------------------------------ Jinja


def _ruby_str(value: str) -> str:
    """A single-quoted Ruby literal: no interpolation, only \\ and ' escaped."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _data_url(value: str) -> str:
    return "data:," + urllib.parse.quote(value, safe="")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(REPO_ROOT)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["tojson"] = lambda value: json.dumps(value, ensure_ascii=False)
    env.filters["ruby_str"] = _ruby_str
    env.filters["data_url"] = _data_url
    env.filters["shell_quote"] = shlex.quote
    return env


# --------------------------------------------------------------- the files


def docker_bridge(spec: LabSpec) -> str:
    """docker0's address ("bip"): Docker's 172.17.0.1/16 unless the lab subnet lies in it.

    The default lab's 172.17.8.0/24 does. A dockerd started before the lab network is
    up (the Debian box's, at boot) would take 172.17.0.1/16, and containers on its
    bridge could then not reach the other nodes: they would look for them on docker0.
    """
    for second in range(17, 32):
        bridge = ipaddress.IPv4Interface(f"172.{second}.0.1/16")
        if not bridge.network.overlaps(spec.network.network):
            return str(bridge)
    raise RenderError("no free 172.17-31.0.0/16 for docker0")


def daemon_json(spec: LabSpec) -> str:
    """Docker daemon settings every node gets: the lab mirror; with registry.tls off, the
    lab network as insecure (plain HTTP, the tutorial's way). With TLS the nodes trust
    the lab CA through /etc/docker/certs.d/ instead."""
    settings: dict[str, object] = {
        "bip": docker_bridge(spec),
        "log-driver": "json-file",
        "log-opts": {"max-file": "3", "max-size": "10m"},
        "registry-mirrors": [f"http://{spec.mirror}"],
    }
    if not spec.registry.tls:
        settings["insecure-registries"] = [spec.network.subnet]
    return json.dumps(settings, indent=2, sort_keys=True) + "\n"


def registry_addresses(spec: LabSpec) -> list[str]:
    """host:port of every registry the nodes' docker talks to: each node's and the front."""
    front = f"{spec.front_address}:{spec.loadbalancer.port}"
    own = [f"{node.ip}:{spec.registry.port}" for node in spec.nodes]
    own_lbs = [f"{node.ip}:{spec.loadbalancer.port}" for node in spec.lb_nodes]
    return sorted({front, *own, *own_lbs})


def certs_d_path(address: str) -> str:
    """Where docker looks for the CA of the registry at ``address`` (host:port)."""
    return f"/etc/docker/certs.d/{address}/ca.crt"


def tls_names(spec: LabSpec) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) the registries' certificate must hold: every node's name
    and address, the front address (a VIP too), and localhost."""
    addresses = [node.ip for node in spec.nodes] + [spec.front_address]
    return [node.name for node in spec.nodes], addresses


def libvirt_management_network(spec: LabSpec) -> tuple[str, str]:
    """(name, subnet) of the lab's own vagrant-libvirt management network (SSH, DHCP).

    vagrant-libvirt's shared default network is removed by whichever project made it,
    even while another project's VMs are starting on it; each lab has its own."""
    taken = spec.network.network
    digest = int(hashlib.sha1(spec.name.encode()).hexdigest(), 16)
    for step in range(100):
        subnet = ipaddress.IPv4Network(f"192.168.{122 + (digest + step) % 100}.0/24")
        if not subnet.overlaps(taken):
            return f"{spec.name}-vagrant", str(subnet)
    raise RenderError("no free 192.168.x.0/24 for the libvirt management network")


def mount_unit_name(mount: str) -> str:
    """systemd's name for the mount unit of ``mount`` (as systemd-escape --path)."""
    parts = [p for p in mount.strip("/").split("/") if p]
    escaped = []
    for part in parts:
        out = ""
        for i, ch in enumerate(part):
            if ch.isalnum() or ch in "_:" or (ch == "." and i > 0):
                out += ch
            else:
                out += "".join(f"\\x{b:02x}" for b in ch.encode())
        escaped.append(out)
    return "-".join(escaped) + ".mount"


class _Renderer:
    def __init__(self, spec: LabSpec, build: Path, secrets: LabSecrets, caps: Capabilities):
        self.spec = spec
        self.build = build
        self.secrets = secrets
        self.caps = caps
        self.env = _environment()
        self.base = {
            "spec": spec,
            "caps": caps,
            "nfs_export": spec.nfs.export,
            "nfs_export_abs": str(nfs_export_path(spec, build)),
            "ssh_public_key": secrets.ssh_public_key,
            "ignition_version": IGNITION_VERSION,
            "tls": secrets.registry if spec.registry.tls else None,
            "lb_tls_dir": LB_TLS_DIR,
            "registry_tls_dir": REGISTRY_TLS_DIR,
            "registry_tls_name": REGISTRY_TLS_NAME,
            "push_user": PUSH_USER,
            "read_user": READ_USER,
            "health_path": LB_HEALTH_PATH,
        }

    @property
    def tls(self) -> RegistryTLS | None:
        return self.secrets.registry if self.spec.registry.tls else None

    def text(self, template: str, **extra: object) -> str:
        try:
            return self.env.get_template(template).render(**self.base, **extra)
        except jinja2.TemplateError as exc:
            raise RenderError(f"{template}: {exc}") from exc

    def node_files(self) -> list[NodeFile]:
        files = [
            NodeFile("/etc/docker/daemon.json", daemon_json(self.spec)),
            NodeFile(
                "/etc/profile.d/docker-aliases.sh", self.text("cloud-config/docker-aliases.sh.j2")
            ),
        ]
        if self.tls is not None:  # docker trusts the lab CA for each registry address
            files += [
                NodeFile(certs_d_path(address), self.tls.ca_pem)
                for address in registry_addresses(self.spec)
            ]
        return files

    def node_units(self) -> list[NodeUnit]:
        units = [
            NodeUnit(
                mount_unit_name(self.spec.nfs.mount),
                self.text("cloud-config/units/nfs.mount.j2"),
                enabled=True,
            )
        ]
        if self.spec.time_sync.enabled:
            units += [
                NodeUnit("date.service", self.text("cloud-config/units/date.service.j2"), False),
                NodeUnit("date.timer", self.text("cloud-config/units/date.timer.j2"), True),
            ]
        return units

    def libvirt_units(self) -> list[NodeUnit]:
        """The node units for the libvirt VMs: the same, but NFS from the userspace server.

        Ports are given so that neither the guest (no rpcbind client needed) nor the
        kernel asks the host's portmapper."""
        mount = mount_unit_name(self.spec.nfs.mount)
        options = (
            f"vers=3,proto=tcp,port={USERSPACE_NFS_PORT},mountport={USERSPACE_MOUNT_PORT},"
            f"mountproto=tcp,nolock,soft,timeo=100,addr={self.spec.network.host}"
        )
        nfs = self.text(
            "cloud-config/units/nfs.mount.j2",
            nfs_options=options,
            nfs_server_note=", served by nfs-ganesha",
        )
        return [
            NodeUnit(mount, nfs, True) if unit.name == mount else unit for unit in self.node_units()
        ]

    def ignition(self, node_ctx: dict[str, object]) -> str:
        as_yaml = self.text("cloud-config/ignition.yaml.j2", **node_ctx)
        return json.dumps(yaml.safe_load(as_yaml), indent=2, sort_keys=True) + "\n"

    def files(self) -> list[RenderedFile]:
        spec = self.spec
        node_files, node_units = self.node_files(), self.node_units()
        guest_units = self.libvirt_units()
        vagrantfile = self.text(
            "Vagrantfile.j2",
            lab_bridge=bridge_name(spec),
            guest_units=guest_units,
            management_network=libvirt_management_network(spec),
        )
        out: list[RenderedFile] = [
            RenderedFile("Vagrantfile", vagrantfile.encode()),
            RenderedFile("files/daemon.json", daemon_json(spec).encode()),
            RenderedFile("files/docker-aliases.sh", node_files[1].content.encode()),
        ]
        for unit in node_units:
            out.append(RenderedFile(f"units/systemd/{unit.name}", unit.content.encode()))
        for unit in guest_units:
            out.append(RenderedFile(f"units/libvirt/{unit.name}", unit.content.encode()))
        for node in spec.nodes:
            ctx = {"node": node, "node_files": node_files, "node_units": node_units}
            out.append(RenderedFile(f"{node.name}.ign", self.ignition(ctx).encode()))
            out.append(
                RenderedFile(
                    f"{node.name}.cloud-config.yml",
                    self.text("cloud-config/cloud-config.yml.j2", **ctx).encode(),
                )
            )
            registry = self.text(
                "stacks/registry-config.yml.j2",
                node=node,
                secrets=self.secrets,
                minio_endpoint=spec.minio_endpoint(node),
            )
            out.append(RenderedFile(f"registry/{node.name}.yml", registry.encode(), SECRET_MODE))
        count = len(spec.minio.instances)
        server_urls = f"http://{spec.minio.instances[0].name[:-1]}{{1...{count}}}/export"
        if not _sequential_names(spec):
            server_urls = " ".join(f"http://{i.name}/export" for i in spec.minio.instances)
        out += [
            RenderedFile(
                "stacks/minio.yaml",
                self.text("stacks/minio.yaml.j2", server_urls=server_urls).encode(),
            ),
            RenderedFile("stacks/busybox.yaml", self.text("stacks/busybox.yaml.j2").encode()),
            RenderedFile("redis/redis.conf", self.text("stacks/redis.conf.j2").encode()),
            RenderedFile(
                "units/registry.service",
                self.text("cloud-config/units/registry.service.j2", fleet=True).encode(),
            ),
            RenderedFile(
                "units/systemd/registry.service",
                self.text("cloud-config/units/registry.service.j2", fleet=False).encode(),
            ),
            RenderedFile("lb/traefik.yml", self.text("stacks/lb/traefik.yml.j2").encode()),
        ]
        # With TLS the load balancer's configs hold the push account's Authorization
        # value (what they send the registries): 0600 like the registry configs.
        lb_mode = SECRET_MODE if self.tls is not None else PUBLIC_MODE
        out += [
            RenderedFile(
                "lb/traefik-dynamic.yml",
                self.text("stacks/lb/traefik-dynamic.yml.j2").encode(),
                lb_mode,
            ),
            RenderedFile("lb/haproxy.cfg", self.text("stacks/lb/haproxy.cfg.j2").encode(), lb_mode),
            RenderedFile("lb/nginx.conf", self.text("stacks/lb/nginx.conf.j2").encode(), lb_mode),
        ]
        out += self.keepalived_files()
        return sorted(out, key=lambda f: f.path)

    def keepalived_files(self) -> list[RenderedFile]:
        """A keepalived config per load balancer node, when a virtual IP fronts them."""
        spec = self.spec
        if spec.loadbalancer.vip is None:
            return []
        lb_nodes = spec.lb_nodes
        # The health check's curl may take longer on slow (emulated) nodes.
        curl_seconds = math.ceil(self.caps.scaled(1))
        return [
            RenderedFile(
                keepalived_config(node.name),
                self.text(
                    "stacks/lb/keepalived.conf.j2",
                    node=node,
                    priority=vrrp_priority(rank),
                    peers=[peer for peer in lb_nodes if peer != node],
                    curl_seconds=curl_seconds,
                ).encode(),
            )
            for rank, node in enumerate(lb_nodes)
        ]


def keepalived_config(node: str) -> str:
    """The rendered keepalived config of ``node``, relative to the build directory."""
    return f"{KEEPALIVED_DIR}/{node}.conf"


def vrrp_priority(rank: int) -> int:
    """Priorities by the order of loadbalancer.nodes: 150, 140, ... (VRRP allows 1-254)."""
    return max(150 - 10 * rank, 1)


def _sequential_names(spec: LabSpec) -> bool:
    """MinIO's ``{1...n}`` expansion fits when instances are PREFIX1..PREFIXn."""
    names = [i.name for i in spec.minio.instances]
    prefix = names[0][:-1]
    return names == [f"{prefix}{n}" for n in range(1, len(names) + 1)]


# ----------------------------------------------------------------- writing


def _write_atomic(path: Path, content: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_build(build: Path, files: list[RenderedFile]) -> list[Path]:
    """Put ``files`` into ``build``; drop what the previous render made and this one not."""
    build.mkdir(parents=True, exist_ok=True)
    manifest = build / MANIFEST
    previous = set(manifest.read_text().split()) if manifest.exists() else set()
    written = []
    for item in files:
        target = build / item.path
        if not target.exists() or target.read_bytes() != item.content:
            _write_atomic(target, item.content, item.mode)
        os.chmod(target, item.mode)
        written.append(target)
    for stale in sorted(previous - {f.path for f in files}):
        (build / stale).unlink(missing_ok=True)
    listing = "".join(f"{f.path}\n" for f in files).encode()
    if not manifest.exists() or manifest.read_bytes() != listing:
        _write_atomic(manifest, listing, PUBLIC_MODE)
    return written


@dataclass(frozen=True)
class RenderResult:
    build: Path
    files: list[Path]
    secrets: LabSecrets


def render(
    spec: LabSpec, out: str | Path | None = None, caps: Capabilities | None = None
) -> RenderResult:
    """Render the lab into ``out`` (default build/<lab>/); secrets made on first use."""
    build = build_dir(spec.name, out)
    export = nfs_export_path(spec, build)
    if export.exists() and not export.is_dir():  # known before anything is written
        raise RenderError(f"nfs.export: {export} exists and is not a directory")
    caps = caps or Capabilities()
    # Secrets live in the build directory; render in memory before touching anything else.
    try:
        secrets = ensure_secrets(build)
        if spec.registry.tls:
            ensure_registry_tls(secrets.directory, spec.name, *tls_names(spec))
        files = _Renderer(spec, build, secrets, caps).files()
        written = write_build(build, files)
        export.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a full disk, a directory made read-only meanwhile
        raise RenderError(f"cannot write {build}: {exc.strerror or exc}") from None
    return RenderResult(build, written, secrets)
