"""What a phase is made of: steps to run and checks to pass. Data only.

Phases build these; the engine runs them. A step's command may hold
``{name}`` placeholders: ``{node}`` and ``{node_ip}`` are the node it runs on,
other names are values captured by earlier steps (``capture=``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lab.phases.context import PhaseContext


@dataclass(frozen=True)
class Upload:
    """A local file copied to a node (SFTP) before the step's command runs."""

    local: Path
    remote: str
    mode: int = 0o644


@dataclass(frozen=True)
class Step:
    title: str
    nodes: tuple[str, ...] = ()
    command: str = ""
    # Exits 0 when the step's effect is already there: the step is skipped.
    guard: str | None = None
    uploads: tuple[Upload, ...] = ()
    # A local file fed to the command's stdin: secrets never go on a command line.
    stdin_file: Path | None = None
    capture: str | None = None
    # Re-run the command until it exits 0, for at most this many seconds.
    retry_for: float = 0.0
    timeout: float = 180.0
    # Runs on the host instead of a node (e.g. the S3 API); returns a line to show.
    host_action: Callable[[PhaseContext], str] | None = field(default=None, compare=False)
    # What --dry-run shows when the command itself is not meant to be shown.
    display: str | None = None
    # Kit plumbing a trainee needs before doing the phase by hand (a file the tutorial
    # has them write, a client's config): `inv phase NAME --reset` runs these steps too.
    prepares: bool = False


def _equals(expected: str) -> Callable[[str], bool]:
    return lambda seen: seen == expected


# A seen value that starts with this says the checked object is not there at all
# (no such service, no such network): nothing is converging, so the check fails at
# once instead of waiting out its settle time.
ABSENT = "absent:"


@dataclass(frozen=True)
class Check:
    """A named assertion: the seen value (stdout of ``command``) against ``expect``.

    ``name`` is a plain sentence of what is true when the check passes (it names its
    node itself where that matters); ``hint`` is the command a trainee runs on ``node``
    (or on the host, for probes) to see the problem for themselves."""

    name: str
    expect: str
    node: str | None = None
    command: str = ""
    test: Callable[[str], bool] | None = field(default=None, compare=False)
    # Run ``command`` on each of these nodes instead (a property of several nodes, such
    # as which one holds an address); the seen value is "node=output ..." in this order.
    across: tuple[str, ...] = ()
    # Host-side checks return the seen value themselves.
    probe: Callable[[PhaseContext], str] | None = field(default=None, compare=False)
    # Keep trying for this long: services converge, health checks turn green.
    settle_for: float = 0.0
    timeout: float = 120.0
    hint: str = ""

    def passes(self, seen: str) -> bool:
        return (self.test or _equals(self.expect))(seen)

    @staticmethod
    def absent(seen: str) -> bool:
        return seen.startswith(ABSENT)


def contains(fragment: str) -> Callable[[str], bool]:
    return lambda seen: fragment in seen


def count_equals(n: int) -> Callable[[str], bool]:
    return lambda seen: seen.strip() == str(n)


@dataclass(frozen=True)
class CheckResult:
    check: Check
    passed: bool
    seen: str


@dataclass(frozen=True)
class TraineeCommand:
    """One command the tutorial has a trainee type, on ``node`` (None: on the host)."""

    why: str
    command: str
    node: str | None = None
    # False: read it, do not type it now (it would undo the lab, e.g. leaving the swarm).
    run: bool = True
