"""Who is in the class and which lab each trainee gets.

A trainee's lab is the template with its own name (``<template>-<trainee>``), its own
subnet from the class's pool and every address moved into that subnet at the same
offset. Which pool slot a trainee holds is recorded in ``class.json`` the first time,
so re-running ``class.up`` gives everyone the lab they already have.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab.errors import UsageError
from lab.paths import BUILD_ROOT
from lab.spec import LabSpec, load_spec

MAX_TRAINEES = 40  # 1 GB and 55 processes per lab: more than a big server holds
MAX_LAB_NAME = 32  # lab.yaml's `name` bound
DEFAULT_POOL = "10.220.0.0/16"
TRAINEE_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?\Z")
CLASS_FILE = "class.json"


def classes_root() -> Path:
    return BUILD_ROOT / "classes"


def check_trainee_name(name: str, template: str, where: str = "") -> None:
    """A trainee name becomes part of a lab name, a host account and interface names:
    the same grammar as lab.yaml's names (a DNS label) and the same bound."""
    shown = repr(name[:40])
    if not TRAINEE_NAME.match(name) or "--" in name:
        raise UsageError(f"{where}{shown} is not a trainee name: a-z, 0-9 and inner '-', "
                         "1-32 characters")  # fmt: skip
    if len(f"{template}-{name}") > MAX_LAB_NAME:
        raise UsageError(f"{where}{shown}: lab name {template}-{name} is longer than "
                         f"{MAX_LAB_NAME} characters; shorten a name")  # fmt: skip


def trainees_from(count: int | None, names_file: str | None, template: str) -> list[str]:
    """Trainees 1..N, or the names in a file (one a line; blank lines and # comments out)."""
    if names_file is not None:
        names = _read_names(Path(names_file), template)
        if count is not None and count != len(names):
            raise UsageError(f"--trainees {count} but {names_file} names {len(names)} trainees")
        return names
    if count is None:
        raise UsageError("say how many trainees: --trainees N (or --names FILE)")
    if not 1 <= count <= MAX_TRAINEES:
        raise UsageError(f"--trainees must be between 1 and {MAX_TRAINEES}, not {count}")
    names = [str(i) for i in range(1, count + 1)]
    for name in names:
        check_trainee_name(name, template)
    return names


def _read_names(path: Path, template: str) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the trainee names in {path}: {exc}") from None
    names: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        check_trainee_name(line, template, f"{path} line {number}: ")
        if line in names:
            raise UsageError(f"{path} line {number}: trainee {line!r} is named twice")
        names.append(line)
    if not 1 <= len(names) <= MAX_TRAINEES:
        raise UsageError(f"{path} must name 1 to {MAX_TRAINEES} trainees, not {len(names)}")
    return names


def parse_pool(text: str) -> ipaddress.IPv4Network:
    try:
        pool = ipaddress.IPv4Network(text, strict=True)
    except ValueError:
        raise UsageError(f"--pool {text[:40]!r} is not an IPv4 network (10.220.0.0/16)") from None
    if not pool.is_private or pool.subnet_of(ipaddress.IPv4Network("192.168.0.0/16")):
        raise UsageError(f"--pool {pool} must be private (10/8 or 172.16/12)")
    return pool


@dataclass
class ClassRecord:
    """class.json: the template, the pool and each trainee's slot in it."""

    name: str
    template: str
    pool: str
    ssh_port: int
    trainees: dict[str, int] = field(default_factory=dict)  # trainee -> slot

    @staticmethod
    def path(name: str) -> Path:
        return classes_root() / name / CLASS_FILE

    @classmethod
    def load(cls, name: str) -> ClassRecord | None:
        try:
            data = json.loads(cls.path(name).read_text())
        except FileNotFoundError:
            return None
        return cls(**data)

    def save(self) -> None:
        target = self.path(self.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__, indent=1, sort_keys=True))
        os.replace(tmp, target)

    @property
    def directory(self) -> Path:
        return classes_root() / self.name

    def lab_name(self, trainee: str) -> str:
        return f"{self.name}-{trainee}"

    def spec_file(self, trainee: str) -> Path:
        return self.directory / "labs" / f"{trainee}.yaml"


def known_classes() -> list[str]:
    root = classes_root()
    return sorted(p.parent.name for p in root.glob(f"*/{CLASS_FILE}")) if root.is_dir() else []


def slot_subnet(pool: ipaddress.IPv4Network, prefixlen: int, slot: int) -> ipaddress.IPv4Network:
    base = int(pool.network_address) + slot * (1 << (32 - prefixlen))
    return ipaddress.IPv4Network((base, prefixlen))


def slot_count(pool: ipaddress.IPv4Network, prefixlen: int) -> int:
    return 1 << (prefixlen - pool.prefixlen)


def assign_slots(
    record: ClassRecord,
    trainees: Iterable[str],
    prefixlen: int,
    taken: list[ipaddress.IPv4Network],
) -> None:
    """Give each new trainee the lowest free slot whose subnet no host network overlaps;
    a trainee who has one keeps it (the class is idempotent)."""
    pool = ipaddress.IPv4Network(record.pool)
    if prefixlen < pool.prefixlen:
        raise UsageError(f"the template's /{prefixlen} subnet does not fit in --pool {pool}")
    used = set(record.trainees.values())
    slot = 0
    for trainee in trainees:
        if trainee in record.trainees:
            continue
        while slot in used or any(slot_subnet(pool, prefixlen, slot).overlaps(t) for t in taken):
            slot += 1
        if slot >= slot_count(pool, prefixlen):
            raise UsageError(f"--pool {pool} has no free /{prefixlen} left for trainee {trainee}")
        record.trainees[trainee] = slot
        used.add(slot)


def _move(address: str, old: ipaddress.IPv4Network, new: ipaddress.IPv4Network) -> str:
    offset = int(ipaddress.IPv4Address(address)) - int(old.network_address)
    return str(ipaddress.IPv4Address(int(new.network_address) + offset))


def trainee_lab_data(template: dict[str, Any], spec: LabSpec, name: str,
                     subnet: ipaddress.IPv4Network) -> dict[str, Any]:  # fmt: skip
    """The template's data with the trainee's name, subnet and addresses."""
    old = spec.network.network
    data = yaml.safe_load(yaml.safe_dump(template))  # a deep copy of plain data
    data["name"] = name
    network = data.setdefault("network", {})
    network["subnet"] = str(subnet)
    if network.get("host_ip"):
        network["host_ip"] = _move(network["host_ip"], old, subnet)
    for node in data.get("nodes", []):
        node["ip"] = _move(node["ip"], old, subnet)
    lb = data.get("loadbalancer") or {}
    if lb.get("vip"):
        lb["vip"] = _move(lb["vip"], old, subnet)
    return data


def load_template(path: Path) -> tuple[dict[str, Any], LabSpec]:
    """The template as data (to copy) and as a checked spec (to reason about)."""
    spec = load_spec(path)
    if Path(spec.nfs.export).is_absolute():
        raise UsageError(f"{path}: nfs.export {spec.nfs.export} is one host directory; in a "
                         "class every lab needs its own: use a relative nfs.export")  # fmt: skip
    return yaml.safe_load(path.read_text()), spec


def write_trainee_spec(record: ClassRecord, trainee: str, data: dict[str, Any]) -> LabSpec:
    """Write the trainee's lab file and read it back through lab.yaml's own checks."""
    target = record.spec_file(trainee)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("# made by `inv class.up` from " + record.template + "\n"
                      + yaml.safe_dump(data, sort_keys=False))  # fmt: skip
    return load_spec(target)
