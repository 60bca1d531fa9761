"""lab.yaml -> a typed, checked LabSpec.

Every problem is reported as one line that names the file and the field,
e.g. ``lab.yaml: nodes[1].ip: '10.0.0' is not an IPv4 address``; nothing is
raised past :func:`load_spec` but :class:`SpecError`, which carries all lines.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from lab.errors import UsageError

HOSTNAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
IMAGE_RE = re.compile(
    r"^(?P<name>[a-z0-9][a-z0-9._-]*(:[0-9]+)?(/[a-z0-9][a-z0-9._-]*)*)"
    r":(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})(@sha256:[0-9a-f]{64})?$"
)
ABS_PATH_RE = re.compile(r"^/[A-Za-z0-9._/-]*$")


class SpecError(UsageError):
    """The lab file is unusable; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems

    def lines(self) -> list[str]:
        return self.problems


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)


def _check_image(value: str) -> str:
    match = IMAGE_RE.match(value)
    if not match or match["tag"] == "latest":
        raise ValueError(f"{value!r} is not an image pinned to a tag (name:tag, not :latest)")
    return value


def _check_abs_path(value: str) -> str:
    if not ABS_PATH_RE.match(value):
        raise ValueError(f"{value!r} is not an absolute path")
    return value


class Node(_Model):
    name: str
    ip: str
    memory: int = Field(2048, ge=512, description="MiB")
    cpus: int = Field(1, ge=1, le=64)

    @field_validator("name")
    @classmethod
    def _hostname(cls, value: str) -> str:
        if not HOSTNAME_RE.match(value):
            raise ValueError(f"{value!r} is not a valid hostname (a-z, 0-9, '-')")
        return value

    @field_validator("ip")
    @classmethod
    def _ipv4(cls, value: str) -> str:
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IPv4 address") from None
        return value


class Network(_Model):
    subnet: str = "172.17.8.0/24"
    host_ip: str | None = Field(
        None, description="the host's address on the lab network; default: the subnet's first"
    )

    @field_validator("subnet")
    @classmethod
    def _subnet(cls, value: str) -> str:
        try:
            ipaddress.IPv4Network(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IPv4 network such as 172.17.8.0/24") from None
        return value

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def host(self) -> str:
        return self.host_ip or str(next(self.network.hosts()))

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen


class Box(_Model):
    os: Literal["flatcar", "coreos"] = "flatcar"
    channel: Literal["stable", "beta", "alpha"] = "stable"
    name: str | None = None
    url: str | None = None
    # The libvirt path runs a generic Debian box with Docker (`inv lab.box` builds it):
    # Flatcar's Vagrant box is VirtualBox-only.
    libvirt: str = "ha-registry-lab/bookworm-docker"
    # qemu = software emulation (TCG), works everywhere; kvm needs a usable /dev/kvm.
    libvirt_driver: Literal["qemu", "kvm"] = "qemu"

    @field_validator("libvirt")
    @classmethod
    def _box_ref(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$", value):
            raise ValueError(f"{value!r} is not a Vagrant box name such as owner/name")
        return value

    @property
    def box_name(self) -> str:
        return self.name or f"{self.os}-{self.channel}"

    @property
    def box_url(self) -> str:
        if self.url:
            return self.url
        if self.os == "flatcar":
            return (
                f"https://{self.channel}.release.flatcar-linux.net/amd64-usr/current/"
                "flatcar_production_vagrant.box"
            )
        return (
            f"https://{self.channel}.release.core-os.net/amd64-usr/current/"
            "coreos_production_vagrant.json"
        )


class Nfs(_Model):
    export: str = Field("nfs", description="host directory, relative to build/<lab>/ or absolute")
    mount: str = "/mnt/docker_reg"

    _mount = field_validator("mount")(classmethod(lambda cls, v: _check_abs_path(v)))


class MinioInstance(_Model):
    name: str
    node: str
    port: int = Field(ge=1, le=65535)
    data: str

    _data = field_validator("data")(classmethod(lambda cls, v: _check_abs_path(v)))


class Minio(_Model):
    image: str = "minio/minio:RELEASE.2024-05-28T17-19-04Z"
    network: str = "minio_distributed"
    stack: str = "minio"
    instances: list[MinioInstance]

    _image = field_validator("image")(classmethod(lambda cls, v: _check_image(v)))

    @field_validator("instances")
    @classmethod
    def _four_or_more(cls, value: list[MinioInstance]) -> list[MinioInstance]:
        if len(value) < 4:
            raise ValueError(f"distributed MinIO needs at least 4 instances, got {len(value)}")
        return value


class Bucket(_Model):
    name: str = "docker"
    policy: Literal["private", "public-readwrite"] = "private"

    @field_validator("name")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        if not re.match(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", value):
            raise ValueError(f"{value!r} is not a valid S3 bucket name")
        return value


class Redis(_Model):
    image: str = "redis:7.2"
    port: int = Field(6379, ge=1, le=65535)
    maxmemory: str = "256mb"

    _image = field_validator("image")(classmethod(lambda cls, v: _check_image(v)))

    @field_validator("maxmemory")
    @classmethod
    def _size(cls, value: str) -> str:
        if not re.match(r"^[0-9]+(kb|mb|gb)?$", value):
            raise ValueError(f"{value!r} is not a Redis size such as 256mb")
        return value


class Registry(_Model):
    image: str = "registry:2.8.3"
    port: int = Field(5000, ge=1, le=65535)
    region: str = "us-east-1"
    rootdirectory: str = "/registry"
    config_dir: str = "/etc/docker/registry"

    _image = field_validator("image")(classmethod(lambda cls, v: _check_image(v)))
    _paths = field_validator("rootdirectory", "config_dir")(
        classmethod(lambda cls, v: _check_abs_path(v))
    )


class LoadBalancer(_Model):
    kind: Literal["traefik", "haproxy", "nginx"] = "traefik"
    node: str | None = Field(None, description="node that runs it; default: the first node")
    port: int = Field(80, ge=1, le=65535)
    traefik_image: str = "traefik:v3.1"
    haproxy_image: str = "haproxy:2.6"
    nginx_image: str = "nginx:1.22"

    _images = field_validator("traefik_image", "haproxy_image", "nginx_image")(
        classmethod(lambda cls, v: _check_image(v))
    )

    @property
    def image(self) -> str:
        return {"traefik": self.traefik_image, "haproxy": self.haproxy_image}.get(
            self.kind, self.nginx_image
        )


class TimeSync(_Model):
    enabled: bool = True
    interval: str = Field("hourly", description="systemd OnCalendar= value")


class Swarm(_Model):
    """The swarm network the tutorial creates for its services."""

    network: str = "services"
    subnet: str = "10.20.1.0/24"
    # --opt encrypted (IPsec ESP between nodes): only where the nodes' kernel has ESP
    # (Capabilities.esp); the phase says so where it is left off.
    encrypted: bool = True

    _subnet = field_validator("subnet")(classmethod(lambda cls, v: Network._subnet(v)))


class Demo(_Model):
    busybox_image: str = "busybox:1.36"
    hello_image: str = "hello-world:linux"
    replicas: int = Field(3, ge=1, le=50)

    _images = field_validator("busybox_image", "hello_image")(
        classmethod(lambda cls, v: _check_image(v))
    )


DEFAULT_ALIASES = {
    "dps": "docker ps --format 'table {{.Names}}\\t{{.Image}}\\t{{.Status}}'",
    "dsl": "docker service ls",
    "dsps": "docker service ps --no-trunc",
    "dnl": "docker node ls",
    "dlogs": "docker logs --tail 100 -f",
}


class LabSpec(_Model):
    name: str = "ha-registry"
    user: str = Field("core", description="login user on the nodes")
    box: Box = Box()
    network: Network = Network()
    nodes: list[Node]
    nfs: Nfs = Nfs()
    minio: Minio
    bucket: Bucket = Bucket()
    redis: Redis = Redis()
    registry: Registry = Registry()
    loadbalancer: LoadBalancer = LoadBalancer()
    time_sync: TimeSync = TimeSync()
    swarm: Swarm = Swarm()
    demo: Demo = Demo()
    aliases: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_ALIASES))
    mirror_port: int = Field(5000, ge=1, le=65535, description="host-side registry mirror")

    @field_validator("name", "user")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not HOSTNAME_RE.match(value):
            raise ValueError(f"{value!r} must be lowercase letters, digits and '-'")
        return value

    @field_validator("nodes")
    @classmethod
    def _at_least_one(cls, value: list[Node]) -> list[Node]:
        if not value:
            raise ValueError("a lab needs at least one node")
        return value

    @field_validator("aliases")
    @classmethod
    def _alias_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_-]*$", name):
                raise ValueError(f"{name!r} is not a valid alias name")
        return value

    # -- derived views used by the renderer, the engine and the providers --

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    @property
    def lb_node(self) -> Node:
        return self.node(self.loadbalancer.node) if self.loadbalancer.node else self.nodes[0]

    @property
    def mirror(self) -> str:
        return f"{self.network.host}:{self.mirror_port}"

    def minio_of(self, node: Node) -> MinioInstance | None:
        """The MinIO instance a node's registry talks to: its own, else the first."""
        own = [i for i in self.minio.instances if i.node == node.name]
        return own[0] if own else None

    def minio_endpoint(self, node: Node) -> str:
        instance = self.minio_of(node) or self.minio.instances[0]
        return f"http://{self.node(instance.node).ip}:{instance.port}"


# ---------------------------------------------------------------- loading


def _field_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(top level)"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that owns the field at ``loc`` (for did-you-mean hints)."""
    model: Any = LabSpec
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) else None
        if field is None:
            return model if isinstance(model, type) and issubclass(model, BaseModel) else None
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        inner = args[0] if args else annotation
        model = inner if isinstance(inner, type) and issubclass(inner, BaseModel) else annotation
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


_TYPE_WORDS = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _message(error: dict[str, Any]) -> str:
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        owner = _model_at(error["loc"][:-1])
        key = error["loc"][-1]
        choices = list(owner.model_fields) if owner else []
        close = difflib.get_close_matches(str(key), choices, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(choices)}"
        return f"unknown key{hint}"
    if kind == "missing":
        return "is required"
    if kind in _TYPE_WORDS:
        return f"{value!r} is not {_TYPE_WORDS[kind]}"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"{value!r} is not one of {expected}"
    if kind in ("greater_than_equal", "less_than_equal"):
        return f"{value!r} {error['msg'].lower()}"
    if kind == "value_error":
        return str(error.get("ctx", {}).get("error", error["msg"]))
    return f"{value!r}: {error['msg']}"


def _semantic_problems(spec: LabSpec) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    subnet = spec.network.network
    names = Counter(n.name for n in spec.nodes)
    ips = Counter(n.ip for n in spec.nodes)
    seen_names: set[str] = set()
    seen_ips: set[str] = set()
    for i, node in enumerate(spec.nodes):
        if names[node.name] > 1 and node.name in seen_names:
            problems.append((f"nodes[{i}].name", f"{node.name!r} is used by another node"))
        if ips[node.ip] > 1 and node.ip in seen_ips:
            problems.append((f"nodes[{i}].ip", f"{node.ip!r} is used by another node"))
        seen_names.add(node.name)
        seen_ips.add(node.ip)
        address = ipaddress.IPv4Address(node.ip)
        if address not in subnet or address in (subnet.network_address, subnet.broadcast_address):
            problems.append((f"nodes[{i}].ip", f"{node.ip!r} is outside the lab subnet {subnet}"))
        elif node.ip == spec.network.host:
            problems.append((f"nodes[{i}].ip", f"{node.ip!r} is the host's address on the lab"))
    if spec.network.host_ip is not None:
        try:
            if ipaddress.IPv4Address(spec.network.host_ip) not in subnet:
                problems.append(
                    ("network.host_ip", f"{spec.network.host_ip!r} is outside {subnet}")
                )
        except ValueError:
            problems.append(("network.host_ip", f"{spec.network.host_ip!r} is not an IPv4 address"))

    known = set(names)
    ports: dict[str, dict[int, str]] = {n.name: {} for n in spec.nodes}

    def claim(node: str, port: int, field: str) -> None:
        used = ports.setdefault(node, {})
        if port in used:
            problems.append((field, f"port {port} on {node} is already used by {used[port]}"))
        else:
            used[port] = field

    for name in names:  # each distinct node once: a duplicate is reported above
        claim(name, spec.registry.port, "registry.port")
        claim(name, spec.redis.port, "redis.port")
    instance_names = Counter(i.name for i in spec.minio.instances)
    for i, inst in enumerate(spec.minio.instances):
        where = f"minio.instances[{i}]"
        if instance_names[inst.name] > 1:
            problems.append((f"{where}.name", f"{inst.name!r} is used by another instance"))
        if inst.node not in known:
            problems.append(
                (f"{where}.node", f"{inst.node!r} is not a node of this lab ({', '.join(names)})")
            )
            continue
        claim(inst.node, inst.port, f"{where}.port")
        if not inst.data.startswith(spec.nfs.mount.rstrip("/") + "/"):
            problems.append((f"{where}.data", f"{inst.data!r} is not under nfs.mount"))
    lb = spec.loadbalancer
    if lb.node is not None and lb.node not in known:
        problems.append(("loadbalancer.node", f"{lb.node!r} is not a node of this lab"))
    else:
        claim(spec.lb_node.name, lb.port, "loadbalancer.port")
    return problems


def parse_spec(data: Any, source: str = "lab.yaml") -> LabSpec:
    """Validate already-loaded YAML data; raise SpecError naming each bad field."""
    if data is None:
        raise SpecError([f"{source}: the file is empty"])
    if not isinstance(data, dict):
        raise SpecError([f"{source}: the top level must be a mapping, not {type(data).__name__}"])
    try:
        spec = LabSpec.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"{source}: {_field_path(e['loc'])}: {_message(e)}"  # type: ignore[arg-type]
            for e in exc.errors()
        ]
        raise SpecError(lines) from None
    problems = _semantic_problems(spec)
    if problems:
        raise SpecError([f"{source}: {path}: {msg}" for path, msg in problems])
    return spec


def load_spec(path: str | Path) -> LabSpec:
    """Read and check a lab file; any problem raises SpecError (one line each)."""
    path = Path(path)
    source = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([f"{path}: no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([f"{path}: cannot read: {exc}"]) from None
    if not text.strip():
        raise SpecError([f"{source}: the file is empty"])
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError([f"{source}: not valid YAML: {where}{problem}"]) from None
    return parse_spec(data, source)
