"""lab.yaml -> a typed, checked LabSpec.

Every problem is reported as one line that names the file and the field,
e.g. ``lab.yaml: nodes[1].ip: '10.0.0' is not an IPv4 address``; nothing is
raised past :func:`load_spec` but :class:`SpecError`, which carries all lines.

The spec is strict on purpose: its values end up in shell commands run as root
on the nodes, in YAML and JSON configs, in systemd units and in a Vagrantfile.
Every string field therefore has a grammar (a DNS label, a docker name, an
absolute path...), none may hold a control character, lists and strings have
upper bounds, and the YAML itself is read with bounds on its size, nesting and
aliases. Whatever the input, an error is a few short lines and nothing else.
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import re
import reprlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from lab.errors import UsageError

# ------------------------------------------------------------------ bounds
# A lab is a workshop on one host; these bounds are far above any real lab and far
# below what makes loading slow. The README ("What lab.yaml accepts") lists them.

MAX_FILE_BYTES = 1024 * 1024  # the default lab.yaml is 2 KiB
MAX_YAML_DEPTH = 20  # lab.yaml itself nests 5 deep
MAX_YAML_ALIASES = 50  # *alias uses in one file
MAX_YAML_NODES = 10_000  # values once aliases are expanded: no "billion laughs"
MAX_SCALAR_CHARS = 1024  # longer than any field's own limit
MAX_NODES = 9  # every node is a swarm manager; raft wants few, a host runs few VMs
MIN_MINIO_INSTANCES = 4  # distributed MinIO's minimum
MAX_MINIO_INSTANCES = 16  # MinIO's largest erasure set
MAX_ALIASES = 32
MAX_PROBLEM_LINES = 20  # then "... and K more problems"
MAX_LINE_CHARS = 240
EXCERPT_CHARS = 40  # of a bad value, quoted in an error line
# Debian bookworm's keepalived, built offline (lab/images.py); tagged by what it holds.
KEEPALIVED_IMAGE = "ha-registry-lab/keepalived:2.2.7"


# ------------------------------------------------------------------ errors


class SpecError(UsageError):
    """The lab file is unusable; ``problems`` holds one short line per problem.

    Lines are made safe to print here, whoever built them: control characters and
    unpaired surrogates escaped, each line cut to MAX_LINE_CHARS, at most
    MAX_PROBLEM_LINES of them.
    """

    def __init__(self, problems: list[str]):
        lines = [_printable_line(p) for p in problems[:MAX_PROBLEM_LINES]]
        if len(problems) > MAX_PROBLEM_LINES:
            lines.append(f"… and {len(problems) - MAX_PROBLEM_LINES} more problems")
        super().__init__("\n".join(lines))
        self.problems = lines

    def lines(self) -> list[str]:
        return self.problems


def _printable_line(line: str) -> str:
    safe = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in line)
    return safe if len(safe) <= MAX_LINE_CHARS else safe[: MAX_LINE_CHARS - 1] + "…"


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel = 2
_SHORT_REPR.maxlist = _SHORT_REPR.maxtuple = _SHORT_REPR.maxset = _SHORT_REPR.maxdict = 3
_SHORT_REPR.maxstring = _SHORT_REPR.maxlong = _SHORT_REPR.maxother = EXCERPT_CHARS


def excerpt(value: object) -> str:
    """A bad value as an error line quotes it: repr, at most EXCERPT_CHARS, then '…'."""
    if isinstance(value, str):
        shown = repr(value[:EXCERPT_CHARS])
        return shown + "…" if len(value) > EXCERPT_CHARS else shown
    try:
        shown = _SHORT_REPR.repr(value)
    except ValueError:  # an int beyond Python's digit limit for str()
        return "a number too long to show"
    return shown if len(shown) <= EXCERPT_CHARS + 10 else shown[:EXCERPT_CHARS] + "…"


# ----------------------------------------------------------------- grammars


def _refuse_invisible(value: str) -> None:
    """No control, format or unassigned characters, no unpaired surrogates."""
    for ch in value:
        if not ch.isprintable():
            raise ValueError(
                f"{excerpt(value)} contains a control or invisible character (U+{ord(ch):04X})"
            )


@dataclass(frozen=True)
class Grammar:
    """A string field's grammar: printable, at most ``max_length``, matches ``pattern``."""

    what: str  # "a DNS label such as coreos1": completes "... is not <what>"
    pattern: str
    max_length: int

    def __call__(self, value: str) -> str:
        _refuse_invisible(value)
        if len(value) > self.max_length:
            raise ValueError(f"{excerpt(value)} is longer than {self.max_length} characters")
        if not re.fullmatch(self.pattern, value):  # fullmatch: no trailing newline slips by
            raise ValueError(f"{excerpt(value)} is not {self.what}")
        return value


# RFC 1123 labels, starting with a letter (an all-digit name reads as a number).
_LABEL = r"[a-z](?:[a-z0-9-]*[a-z0-9])?"
LAB_NAME = Grammar("a DNS label such as ha-registry (a-z, 0-9, '-')", _LABEL, 32)
HOSTNAME = Grammar("a valid hostname: a DNS label such as coreos1 (a-z, 0-9, '-')", _LABEL, 63)
# `<stack>_<instance>` is a swarm service name, at most 63 characters: 30 + 1 + 32.
INSTANCE_NAME = Grammar("a DNS label such as minio1 (a-z, 0-9, '-')", _LABEL, 32)
STACK_NAME = Grammar(
    "a docker stack name such as minio (a-z, 0-9, '-', '_')",
    r"[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?",
    30,
)
NETWORK_NAME = Grammar(
    "a docker network name such as minio_distributed (a-z, 0-9, '-', '_', '.')",
    r"[a-z0-9](?:[a-z0-9_.-]*[a-z0-9])?",
    63,
)
USER_NAME = Grammar("a login name such as core (a-z, 0-9, '-', '_')", r"[a-z_][a-z0-9_-]*", 32)
IMAGE = Grammar(
    "an image pinned to a tag (name:tag, not :latest)",
    r"(?P<name>[a-z0-9][a-z0-9._-]*(?::[0-9]+)?(?:/[a-z0-9][a-z0-9._-]*)*)"
    r":(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})(?:@sha256:[0-9a-f]{64})?",
    255,
)
BOX_NAME = Grammar(
    "a Vagrant box name such as owner/name",
    r"[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)?",
    100,
)
# RFC 3986 characters without quotes, parentheses, '$', ';', '!', '*' or ','.
BOX_URL = Grammar(
    "an http(s):// or file:// URL", r"(?:https?|file)://[A-Za-z0-9._~:/?#@%=&+\[\]-]+", 500
)
IPV4 = Grammar("an IPv4 address", r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}", 15)
SUBNET = Grammar(
    "an IPv4 network such as 172.17.8.0/24", r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}/[0-9]{1,2}", 18
)
# AWS's region names: us-east-1, eu-central-2, ap-southeast-4, us-gov-west-1, cn-north-1 ...
REGION = Grammar(
    "a region name such as us-east-1",
    r"[a-z]{2}(?:-(?:gov|iso|isob|isoe|isof))?"
    r"-(?:central|north|south|east|west|northeast|northwest|southeast|southwest)-[1-9][0-9]?",
    25,
)
ALIAS_NAME = Grammar("an alias name such as dps", r"[A-Za-z_][A-Za-z0-9_-]*", 32)
ALIAS_COMMAND = Grammar("a command", r".+", 200)  # free text: shell-quoted where rendered
_PATH = r"(?:/[A-Za-z0-9_.-]+)+"
ABS_PATH = Grammar("an absolute path (/, then a-z, A-Z, 0-9, '.', '_', '-')", _PATH, 200)

# systemd OnCalendar=: its shorthands, or a calendar event such as `*:0/15`,
# `*-*-* 03:00:00` or `Mon..Fri 03:00` (systemd-analyze checks the numbers in lab.validate).
CALENDAR_SHORTHANDS = (
    "minutely",
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "quarterly",
    "semiannually",
    "yearly",
    "annually",
)
_WEEKDAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_CAL_VALUE = r"(?:\*|[0-9]{1,4})(?:\.\.[0-9]{1,4})?(?:/[0-9]{1,4})?"
_CAL_LIST = rf"{_CAL_VALUE}(?:,{_CAL_VALUE})*"
CALENDAR = Grammar(
    "a systemd calendar such as hourly, daily, *:0/15 or Mon..Fri 03:00",
    rf"(?:{'|'.join(CALENDAR_SHORTHANDS)})"
    rf"|(?:{_WEEKDAY}(?:(?:\.\.|,){_WEEKDAY})* )?(?:{_CAL_LIST}-{_CAL_LIST}-{_CAL_LIST} )?"
    rf"{_CAL_LIST}:{_CAL_LIST}(?::{_CAL_LIST})?",
    64,
)


def _path_parts(value: str) -> list[str]:
    return value.strip("/").split("/")


def _no_dot_parts(value: str) -> str:
    if any(part in (".", "..") for part in _path_parts(value)):
        raise ValueError(f"{excerpt(value)} has a '.' or '..' component")
    return value


def _abs_path(value: str) -> str:
    return _no_dot_parts(ABS_PATH(value))


# Pseudo filesystems: nothing of the lab belongs there.
PSEUDO_FS = ("/proc", "/sys", "/dev")
# Directories the lab must not take over as a whole: the local provider empties the
# NFS export when it restores a checkpoint, nodes mount the share over nfs.mount.
SYSTEM_DIRS = frozenset((
    "/bin", "/boot", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media", "/mnt",
    "/opt", "/root", "/run", "/sbin", "/srv", "/tmp", "/usr", "/var",
))  # fmt: skip


def _not_a_system_dir(value: str) -> str:
    for root in PSEUDO_FS:
        if value == root or value.startswith(root + "/"):
            raise ValueError(f"{excerpt(value)} is under {root}")
    if value in SYSTEM_DIRS:
        raise ValueError(f"{excerpt(value)} is a system directory; use a directory below it")
    return value


def _node_dir(value: str) -> str:
    """A directory on the nodes: an absolute path, not a system one."""
    return _not_a_system_dir(_abs_path(value))


# Top-level names the kit itself uses in build/<lab>/: an export there would be
# shared over NFS (secrets!) and emptied by the local provider.
RESERVED_BUILD_NAMES = frozenset((
    "secrets", "registry", "files", "units", "lb", "stacks", "redis", "logs", "snapshots",
    "local", "local.xfs", "local.btrfs", "nfs-server", "known_hosts", "state.json", "Vagrantfile",
))  # fmt: skip
RESERVED_BUILD_SUFFIXES = (".ign", ".cloud-config.yml")
_RELATIVE_PATH = r"[A-Za-z0-9_-][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_.-]+)*"


def _nfs_export(value: str) -> str:
    """A directory inside the build directory (relative), or an absolute host directory."""
    _refuse_invisible(value)
    if len(value) > 200:
        raise ValueError(f"{excerpt(value)} is longer than 200 characters")
    if value.startswith("/"):
        return _host_export(_abs_path(value))
    if not re.fullmatch(_RELATIVE_PATH, value):
        raise ValueError(
            f"{excerpt(value)} is not a directory inside the build directory (such as nfs) "
            "nor an absolute path"
        )
    _no_dot_parts(value)
    first = _path_parts(value)[0]
    if first in RESERVED_BUILD_NAMES or first.endswith(RESERVED_BUILD_SUFFIXES):
        raise ValueError(f"{excerpt(value)} is where the kit keeps its own files; use nfs")
    return value


def _host_export(value: str) -> str:
    _not_a_system_dir(value)
    path = Path(value)
    try:
        resolved = path.resolve()
        if str(resolved) != value:  # a symbolic link on the way: check where it leads
            _not_a_system_dir(str(resolved))
        if path.exists() and not path.is_dir():
            raise ValueError(f"{excerpt(value)} exists and is not a directory")
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symbolic link loop
        reason = exc.strerror if isinstance(exc, OSError) else "a symbolic link loop"
        raise ValueError(f"{excerpt(value)} cannot be checked: {reason}") from None
    return value


REDIS_UNITS = {
    "": 1,
    "k": 1000,
    "kb": 1024,
    "m": 1000**2,
    "mb": 1024**2,
    "g": 1000**3,
    "gb": 1024**3,
}
MIN_REDIS_BYTES = 1024**2
MAX_REDIS_BYTES = 64 * 1024**3


def _redis_size(value: str) -> str:
    Grammar("a Redis size such as 256mb", r"[1-9][0-9]{0,11}(?:k|kb|m|mb|g|gb)?", 14)(value)
    digits = re.match(r"[0-9]+", value)
    assert digits is not None  # the grammar starts with digits
    size = int(digits[0]) * REDIS_UNITS[value[digits.end() :]]
    if not MIN_REDIS_BYTES <= size <= MAX_REDIS_BYTES:
        raise ValueError(f"{excerpt(value)} is not between 1mb and 64gb")
    return value


def _bucket_name(value: str) -> str:
    """S3's bucket naming rules (the ones a MinIO and AWS both enforce)."""
    Grammar("a valid S3 bucket name", r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", 63)(value)
    if ".." in value or re.fullmatch(r"[0-9]+(?:\.[0-9]+){3}", value):
        raise ValueError(f"{excerpt(value)} is not a valid S3 bucket name (no '..', not an IP)")
    if value.startswith(("xn--", "sthree-")) or value.endswith(
        ("-s3alias", "--ol-s3", ".mrap", "--x-s3")
    ):
        raise ValueError(f"{excerpt(value)} is not a valid S3 bucket name (reserved prefix/suffix)")
    return value


def _image(value: str) -> str:
    IMAGE(value)
    if re.fullmatch(IMAGE.pattern, value)["tag"] == "latest":  # type: ignore[index]
        raise ValueError(f"{excerpt(value)} is not {IMAGE.what}")
    return value


def _ipv4(value: str) -> str:
    IPV4(value)
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"{excerpt(value)} is not an IPv4 address") from None
    return value


# The lab network lives on the host: only private ranges (RFC 1918), big enough for
# the host and the nodes, and small enough that render.py always finds Docker's bridge
# (a free 172.17-31.0.0/16: any /16 or smaller leaves 14 of them) and the libvirt
# management network (a free 192.168.122-221.0/24: only 192.168.0.0/16 covers them all).
PRIVATE_RANGES = tuple(
    ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
MIN_PREFIX, MAX_PREFIX = 16, 29
LIBVIRT_MANAGEMENT_RANGE = ipaddress.IPv4Network("192.168.0.0/16")


def _subnet(value: str) -> str:
    SUBNET(value)
    try:
        network = ipaddress.IPv4Network(value)
    except ValueError:
        raise ValueError(f"{excerpt(value)} is not an IPv4 network such as 172.17.8.0/24") from None
    if not any(network.subnet_of(r) for r in PRIVATE_RANGES):
        raise ValueError(f"{value!r} is not private (10/8, 172.16/12 or 192.168/16)")
    if not MIN_PREFIX <= network.prefixlen <= MAX_PREFIX:
        raise ValueError(f"{value!r} is not a /{MIN_PREFIX} to /{MAX_PREFIX} network")
    if network == LIBVIRT_MANAGEMENT_RANGE:
        raise ValueError(f"{value!r} leaves no 192.168.x.0/24 for the libvirt management network")
    return value


def _is(check: Any) -> AfterValidator:
    return AfterValidator(check)


LabName = Annotated[str, _is(LAB_NAME)]
HostName = Annotated[str, _is(HOSTNAME)]
Image = Annotated[str, _is(_image)]
AbsPath = Annotated[str, _is(_abs_path)]
NodeDir = Annotated[str, _is(_node_dir)]
Port = Annotated[int, Field(ge=1, le=65535)]


# ------------------------------------------------------------------- model


class _Model(BaseModel):
    # strict: YAML gives real types; no "5000" for a port, no true for a count.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Node(_Model):
    name: HostName
    ip: Annotated[str, _is(_ipv4)]
    memory: int = Field(2048, ge=512, le=65536, description="MiB")
    cpus: int = Field(1, ge=1, le=64)


class Network(_Model):
    subnet: Annotated[str, _is(_subnet)] = "172.17.8.0/24"
    host_ip: Annotated[str, _is(_ipv4)] | None = Field(
        None, description="the host's address on the lab network; default: the subnet's first"
    )

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
    name: Annotated[str, _is(BOX_NAME)] | None = None
    url: Annotated[str, _is(BOX_URL)] | None = None
    # The libvirt path runs a generic Debian box with Docker (`inv lab.box` builds it):
    # Flatcar's Vagrant box is VirtualBox-only.
    libvirt: Annotated[str, _is(BOX_NAME)] = "ha-registry-lab/bookworm-docker"
    # qemu = software emulation (TCG), works everywhere; kvm needs a usable /dev/kvm.
    libvirt_driver: Literal["qemu", "kvm"] = "qemu"

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
    export: Annotated[str, _is(_nfs_export)] = Field(
        "nfs", description="host directory, relative to build/<lab>/ or absolute"
    )
    mount: NodeDir = "/mnt/docker_reg"


class MinioInstance(_Model):
    name: Annotated[str, _is(INSTANCE_NAME)]
    node: HostName
    port: Port
    data: AbsPath


class Minio(_Model):
    image: Image = "minio/minio:RELEASE.2024-05-28T17-19-04Z"
    network: Annotated[str, _is(NETWORK_NAME)] = "minio_distributed"
    stack: Annotated[str, _is(STACK_NAME)] = "minio"
    instances: list[MinioInstance] = Field(max_length=MAX_MINIO_INSTANCES)

    @field_validator("instances")
    @classmethod
    def _four_or_more(cls, value: list[MinioInstance]) -> list[MinioInstance]:
        if len(value) < MIN_MINIO_INSTANCES:
            raise ValueError(
                f"distributed MinIO needs at least {MIN_MINIO_INSTANCES} instances, "
                f"got {len(value)}"
            )
        return value


class Bucket(_Model):
    name: Annotated[str, _is(_bucket_name)] = "docker"
    policy: Literal["private", "public-readwrite"] = "private"


class Redis(_Model):
    image: Image = "redis:7.2"
    port: Port = 6379
    maxmemory: Annotated[str, _is(_redis_size)] = "256mb"


class Registry(_Model):
    image: Image = "registry:2.8.3"
    port: Port = 5000
    region: Annotated[str, _is(REGION)] = "us-east-1"
    rootdirectory: AbsPath = "/registry"  # a key prefix in the bucket
    config_dir: NodeDir = "/etc/docker/registry"
    # HTTPS with the lab CA and two accounts (push, read-only); false reproduces the
    # tutorial exactly: plain HTTP, no login, insecure-registries on every node.
    tls: bool = True


class LoadBalancer(_Model):
    kind: Literal["traefik", "haproxy", "nginx"] = "traefik"
    node: HostName | None = Field(None, description="node that runs it; default: the first node")
    nodes: list[HostName] | None = Field(
        None,
        max_length=MAX_NODES,
        description="nodes that run it (a front door that survives a node); default: [node]",
    )
    vip: Annotated[str, _is(_ipv4)] | None = Field(
        None, description="virtual IP keepalived moves between `nodes`; required with 2 or more"
    )
    vrrp_id: int | None = Field(
        None, ge=1, le=255, description="VRRP virtual_router_id; default: derived from the lab name"
    )
    port: Port = 80
    traefik_image: Image = "traefik:v3.1"
    haproxy_image: Image = "haproxy:2.6"
    nginx_image: Image = "nginx:1.22"
    keepalived_image: Image = KEEPALIVED_IMAGE

    @property
    def image(self) -> str:
        return {"traefik": self.traefik_image, "haproxy": self.haproxy_image}.get(
            self.kind, self.nginx_image
        )


class TimeSync(_Model):
    enabled: bool = True
    interval: Annotated[str, _is(CALENDAR)] = Field(
        "hourly", description="systemd OnCalendar= value"
    )


class Swarm(_Model):
    """The swarm network the tutorial creates for its services."""

    network: Annotated[str, _is(NETWORK_NAME)] = "services"
    subnet: Annotated[str, _is(_subnet)] = "10.20.1.0/24"
    # --opt encrypted (IPsec ESP between nodes): only where the nodes' kernel has ESP
    # (Capabilities.esp); the phase says so where it is left off.
    encrypted: bool = True


class Demo(_Model):
    busybox_image: Image = "busybox:1.36"
    hello_image: Image = "hello-world:linux"
    replicas: int = Field(3, ge=1, le=50)


DEFAULT_ALIASES = {
    "dps": "docker ps --format 'table {{.Names}}\\t{{.Image}}\\t{{.Status}}'",
    "dsl": "docker service ls",
    "dsps": "docker service ps --no-trunc",
    "dnl": "docker node ls",
    "dlogs": "docker logs --tail 100 -f",
}


class LabSpec(_Model):
    name: LabName = "ha-registry"
    user: Annotated[str, _is(USER_NAME)] = Field("core", description="login user on the nodes")
    box: Box = Box()
    network: Network = Network()
    nodes: list[Node] = Field(max_length=MAX_NODES)
    nfs: Nfs = Nfs()
    minio: Minio
    bucket: Bucket = Bucket()
    redis: Redis = Redis()
    registry: Registry = Registry()
    loadbalancer: LoadBalancer = LoadBalancer()
    time_sync: TimeSync = TimeSync()
    swarm: Swarm = Swarm()
    demo: Demo = Demo()
    # Alias commands are shell by design; they are rendered shell-quoted, one per alias.
    aliases: dict[Annotated[str, _is(ALIAS_NAME)], Annotated[str, _is(ALIAS_COMMAND)]] = Field(
        default_factory=lambda: dict(DEFAULT_ALIASES), max_length=MAX_ALIASES
    )
    mirror_port: Port = Field(5000, description="host-side registry mirror")

    @field_validator("nodes")
    @classmethod
    def _at_least_one(cls, value: list[Node]) -> list[Node]:
        if not value:
            raise ValueError("a lab needs at least one node")
        return value

    # -- derived views used by the renderer, the engine and the providers --

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    @property
    def lb_nodes(self) -> list[Node]:
        """The nodes that run the load balancer, in priority order (the first is preferred)."""
        lb = self.loadbalancer
        if lb.nodes:
            return [self.node(name) for name in lb.nodes]
        return [self.node(lb.node)] if lb.node else [self.nodes[0]]

    @property
    def lb_node(self) -> Node:
        """The first (in the tutorial's layout the only) load balancer node."""
        return self.lb_nodes[0]

    @property
    def front_address(self) -> str:
        """The lab's front address: the virtual IP if there is one, else the LB node's IP."""
        return self.loadbalancer.vip or self.lb_node.ip

    @property
    def vrrp_router_id(self) -> int:
        """VRRP's virtual_router_id: lab.yaml's, else one derived from the lab's name (stable
        across renders, and likely different for two labs sharing a network)."""
        if self.loadbalancer.vrrp_id is not None:
            return self.loadbalancer.vrrp_id
        return int(hashlib.sha256(self.name.encode()).hexdigest(), 16) % 255 + 1

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


# ------------------------------------------------------------- YAML reading


class _Refused(Exception):
    """The YAML is beyond a bound: where, and which bound."""

    def __init__(self, mark: yaml.Mark | None, problem: str):
        super().__init__(problem)
        self.mark = mark
        self.problem = problem


class _BoundedLoader(yaml.SafeLoader):
    """yaml.SafeLoader with bounds, checked while the document is composed.

    Nesting deeper than MAX_YAML_DEPTH, more than MAX_YAML_ALIASES aliases, more than
    MAX_YAML_NODES values counting each alias as the values it stands for, a scalar
    longer than MAX_SCALAR_CHARS, a recursive alias or a key given twice in one
    mapping stop the load at once, before anything is built from the document.
    """

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0
        self._expanded = 0
        self._sizes: dict[int, int] = {}  # id(node) -> values it stands for

    def _grow(self, count: int, mark: yaml.Mark) -> None:
        self._expanded += count
        if self._expanded > MAX_YAML_NODES:
            raise _Refused(mark, f"more than {MAX_YAML_NODES} values (aliases expanded)")

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            return self._compose_alias(parent, index, event)
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise _Refused(event.start_mark, f"nested deeper than {MAX_YAML_DEPTH} levels")
        before = self._expanded
        self._grow(1, event.start_mark)
        node = super().compose_node(parent, index)
        self._depth -= 1
        if isinstance(node, yaml.ScalarNode) and len(node.value) > MAX_SCALAR_CHARS:
            raise _Refused(node.start_mark, f"a value longer than {MAX_SCALAR_CHARS} characters")
        self._sizes[id(node)] = self._expanded - before
        return node

    def _compose_alias(self, parent: yaml.Node | None, index: Any, event: Any) -> yaml.Node:
        self._aliases += 1
        if self._aliases > MAX_YAML_ALIASES:
            raise _Refused(event.start_mark, f"more than {MAX_YAML_ALIASES} aliases (*name)")
        node = super().compose_node(parent, index)
        size = self._sizes.get(id(node))
        if size is None:  # its anchor is still being composed: the alias is inside it
            raise _Refused(event.start_mark, "an alias inside the value it names")
        self._grow(size, event.start_mark)
        return node

    def compose_mapping_node(self, anchor: str | None) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        seen: set[tuple[str, str]] = set()
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                continue
            if (key.tag, key.value) in seen:  # PyYAML would silently keep the last one
                raise _Refused(key.start_mark, f"the key {excerpt(key.value)} is given twice")
            seen.add((key.tag, key.value))
        return node


def _where(mark: yaml.Mark | None) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""


def _read_yaml(text: str, source: str) -> Any:
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)  # refuses a character YAML does not allow, at once
        return loader.get_single_data()
    except _Refused as exc:
        raise SpecError([f"{source}: {_where(exc.mark)}{exc.problem}"]) from None
    except yaml.MarkedYAMLError as exc:
        problem = exc.problem or str(exc).splitlines()[0]
        raise SpecError(
            [f"{source}: not valid YAML: {_where(exc.problem_mark)}{problem}"]
        ) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        line = text.count("\n", 0, exc.position) + 1
        raise SpecError(
            [f"{source}: not valid YAML: line {line}: character #x{exc.character:04x} not allowed"]
        ) from None
    except (yaml.YAMLError, ValueError, OverflowError) as exc:  # e.g. date 2024-13-45
        raise SpecError([f"{source}: not valid YAML: {str(exc).splitlines()[0]}"]) from None
    finally:
        if loader is not None:
            loader.dispose()


def _read_text(path: Path) -> str:
    """The file as text: at most MAX_FILE_BYTES, UTF-8; else SpecError."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)  # never more: /dev/zero is a "file" too
    except FileNotFoundError:
        raise SpecError([f"{path}: no such file"]) from None
    except OSError as exc:
        raise SpecError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise SpecError(
            [f"{path.name}: larger than {MAX_FILE_BYTES // 1024} KiB; a lab file is a few KiB"]
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise SpecError(
            [f"{path.name}: line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x})"]
        ) from None


# ---------------------------------------------------------------- checking


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,40}")


def _field_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            continue
        # An unknown key is the user's text: shown as a short excerpt, never raw.
        name = part if _PLAIN_KEY.fullmatch(str(part)) else excerpt(part)
        path += f".{name}" if path else name
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


def _unknown_key(loc: tuple[Any, ...]) -> str:
    owner = _model_at(loc[:-1])
    key = loc[-1]
    choices = list(owner.model_fields) if owner else []
    close = (
        difflib.get_close_matches(key, choices, n=1)
        if isinstance(key, str) and len(key) <= EXCERPT_CHARS
        else []
    )
    hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(choices)}"
    return f"unknown key{hint}"


def _message(error: dict[str, Any]) -> str:
    kind = error["type"]
    value = excerpt(error.get("input"))
    ctx = error.get("ctx", {})
    if kind == "extra_forbidden":
        return _unknown_key(error["loc"])
    if kind == "missing":
        return "is required"
    if kind in _TYPE_WORDS:
        return f"{value} is not {_TYPE_WORDS[kind]}"
    if kind == "literal_error":
        return f"{value} is not one of {ctx.get('expected', '')}"
    if kind in ("greater_than_equal", "less_than_equal"):
        return f"{value} {error['msg'].lower()}"
    if kind == "too_long":
        return f"{ctx.get('actual_length')} entries; at most {ctx.get('max_length')} are allowed"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return f"{value}: {error['msg']}"


# Ports a node already uses for what the lab stands on.
NODE_PORTS = {22: "SSH", 2377: "the swarm", 7946: "the swarm", 4789: "the swarm overlay"}


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
    host_ip = spec.network.host_ip
    if host_ip is not None:
        address = ipaddress.IPv4Address(host_ip)
        if address not in subnet or address in (subnet.network_address, subnet.broadcast_address):
            problems.append(("network.host_ip", f"{host_ip!r} is outside {subnet}"))

    known = set(names)
    ports: dict[str, dict[int, str]] = {n.name: dict(NODE_PORTS) for n in spec.nodes}

    def claim(node: str, port: int, field: str) -> None:
        used = ports.setdefault(node, dict(NODE_PORTS))
        if port in used:
            problems.append((field, f"port {port} on {node} is already used by {used[port]}"))
        else:
            used[port] = field

    for name in names:  # each distinct node once: a duplicate is reported above
        claim(name, spec.registry.port, "registry.port")
        claim(name, spec.redis.port, "redis.port")
    instance_names = Counter(i.name for i in spec.minio.instances)
    data_dirs = Counter(i.data for i in spec.minio.instances)
    node_list = ", ".join(names)
    for i, inst in enumerate(spec.minio.instances):
        where = f"minio.instances[{i}]"
        if instance_names[inst.name] > 1:
            problems.append((f"{where}.name", f"{inst.name!r} is used by another instance"))
        if data_dirs[inst.data] > 1:
            problems.append((f"{where}.data", f"{inst.data!r} is used by another instance"))
        if inst.node not in known:
            hint = f" ({node_list})" if len(node_list) <= 80 else ""
            problems.append((f"{where}.node", f"{inst.node!r} is not a node of this lab{hint}"))
            continue
        claim(inst.node, inst.port, f"{where}.port")
        if not inst.data.startswith(spec.nfs.mount.rstrip("/") + "/"):
            problems.append((f"{where}.data", f"{inst.data!r} is not under nfs.mount"))
    lb_problems = _load_balancer_problems(spec, known)
    problems += lb_problems
    if not lb_problems:
        for node in spec.lb_nodes:
            claim(node.name, spec.loadbalancer.port, "loadbalancer.port")
    return problems


def _load_balancer_problems(spec: LabSpec, known: set[str]) -> list[tuple[str, str]]:
    """Which nodes run the load balancer, and the virtual IP in front of them."""
    lb = spec.loadbalancer
    if lb.node is not None and lb.nodes is not None:
        return [("loadbalancer.node", "give loadbalancer.node or loadbalancer.nodes, not both")]
    if lb.node is not None and lb.node not in known:
        return [("loadbalancer.node", f"{lb.node!r} is not a node of this lab")]
    if lb.nodes is not None and not lb.nodes:
        return [("loadbalancer.nodes", "needs at least one node")]
    problems: list[tuple[str, str]] = []
    for i, name in enumerate(lb.nodes or []):
        if name not in known:
            problems.append((f"loadbalancer.nodes[{i}]", f"{name!r} is not a node of this lab"))
        elif name in lb.nodes[:i]:
            problems.append((f"loadbalancer.nodes[{i}]", f"{name!r} is listed twice"))
    if problems:
        return problems
    return _vip_problems(spec)


def _vip_problems(spec: LabSpec) -> list[tuple[str, str]]:
    vip, count = spec.loadbalancer.vip, len(spec.lb_nodes)
    subnet = spec.network.network
    if vip is None:
        if count > 1:
            return [("loadbalancer.vip", f"is required when the load balancer runs on {count} "
                     f"nodes: give a free address in {subnet}")]  # fmt: skip
        return []
    if count < 2:
        return [("loadbalancer.vip", "a virtual IP needs the load balancer on 2 or more nodes "
                 "(loadbalancer.nodes)")]  # fmt: skip
    address = ipaddress.IPv4Address(vip)
    if address not in subnet or address in (subnet.network_address, subnet.broadcast_address):
        return [("loadbalancer.vip", f"{vip!r} is outside the lab subnet {subnet}")]
    if vip == spec.network.host:
        return [("loadbalancer.vip", f"{vip!r} is the host's address on the lab")]
    holders = [n.name for n in spec.nodes if n.ip == vip]
    if holders:
        return [("loadbalancer.vip", f"{vip!r} is {holders[0]}'s address")]
    return []


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
    text = _read_text(path)
    if not text.strip():
        raise SpecError([f"{path.name}: the file is empty"])
    return parse_spec(_read_yaml(text, path.name), path.name)
