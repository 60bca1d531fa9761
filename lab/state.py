"""Progress of a lab, kept in build/<lab>/state.json so `inv lab.up` can resume."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from lab.errors import UsageError

STATE_FILE = "state.json"


KIT = "kit"  # the kit ran the phase's plan
TRAINEE = "trainee"  # a trainee did it by hand after `inv phase NAME --reset`, graded by --check
RESET = "reset"  # status of a phase put back for a trainee to do by hand


@dataclass
class PhaseRecord:
    status: str  # "passed" | "failed" | "reset"
    seconds: float = 0.0
    checkpoint: str | None = None
    stale: bool = False  # an earlier phase was replayed after this one passed
    by: str = KIT
    at: str = ""  # when it was last attempted (run, reset or graded): UTC, ISO 8601
    failed_checks: list[str] = field(default_factory=list)


@dataclass
class LabState:
    provider: str | None = None
    phases: dict[str, PhaseRecord] = field(default_factory=dict)

    @classmethod
    def load(cls, build: Path) -> LabState:
        path = build / STATE_FILE
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text())
            phases = {name: PhaseRecord(**rec) for name, rec in data.get("phases", {}).items()}
            return cls(provider=data.get("provider"), phases=phases)
        except (ValueError, TypeError, AttributeError):
            raise UsageError(
                f"{path} is not a lab state file: remove it (the lab forgets its progress) "
                "or run `inv lab.destroy --provider NAME`"
            ) from None

    def save(self, build: Path) -> None:
        path = build / STATE_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)

    def passed(self, phase: str) -> bool:
        record = self.phases.get(phase)
        return bool(record and record.status == "passed" and not record.stale)


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
