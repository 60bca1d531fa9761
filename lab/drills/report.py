"""What a drill measured, and whether the design kept its promises.

Pure functions over the recorded outcomes: a drill's numbers can be recomputed
from its JSON, and tested without a lab.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from lab.drills.load import Outcome


@dataclass(frozen=True)
class Window:
    """When the fault was injected and healed, in seconds since the load began."""

    fault: float
    heal: float
    end: float


@dataclass
class Numbers:
    requests: int
    pulls: int
    failed_pulls: int
    pushes: int
    failed_pushes: int
    longest_gap: float  # longest stretch with no successful request
    first_failure_after_fault: float | None
    recovery_after_fault: float | None  # None: failing until healed
    recovery_after_heal: float | None  # None: still failing at the end
    pull_recovery_after_fault: float | None = 0.0  # the same, pulls alone
    leader_changes: int = 0
    leaderless_seconds: float = 0.0  # longest time no manager answered as leader
    lost: list[str] = field(default_factory=list)  # acknowledged pushes that did not come back

    @property
    def failed_pull_share(self) -> float:
        return self.failed_pulls / self.pulls if self.pulls else 0.0

    @property
    def failed_push_share(self) -> float:
        return self.failed_pushes / self.pushes if self.pushes else 0.0


def numbers(outcomes: list[Outcome], window: Window) -> Numbers:
    pulls = [o for o in outcomes if o.kind == "pull"]
    pushes = [o for o in outcomes if o.kind == "push"]
    return Numbers(
        requests=len(outcomes),
        pulls=len(pulls),
        failed_pulls=sum(not o.ok for o in pulls),
        pushes=len(pushes),
        failed_pushes=sum(not o.ok for o in pushes),
        longest_gap=longest_gap(outcomes, window.end),
        first_failure_after_fault=_first_failure(outcomes, window.fault, window.heal),
        recovery_after_fault=_recovery_of_all(outcomes, window.fault, window.heal),
        recovery_after_heal=_recovery_of_all(outcomes, window.heal, window.end),
        pull_recovery_after_fault=_recovery(pulls, window.fault, window.heal),
    )


def longest_gap(outcomes: list[Outcome], end: float) -> float:
    """Longest time between two successful answers (from the start, to ``end``)."""
    successes = sorted(o.end for o in outcomes if o.ok)
    marks = [0.0, *successes, end]
    return max((b - a for a, b in zip(marks, marks[1:], strict=False)), default=end)


def _first_failure(outcomes: list[Outcome], since: float, until: float) -> float | None:
    failures = [o.end for o in outcomes if not o.ok and since <= o.end <= until + 1]
    return round(min(failures) - since, 2) if failures else None


def _recovery_of_all(outcomes: list[Outcome], since: float, until: float) -> float | None:
    """Recovered when pulls and pushes each are: the later of the two (None if either
    never did), so pulls succeeding cannot hide pushes that keep failing."""
    kinds = [_recovery([o for o in outcomes if o.kind == kind], since, until)
             for kind in ("pull", "push")]  # fmt: skip
    return None if None in kinds else max(kinds)  # type: ignore[type-var]


def _recovery(outcomes: list[Outcome], since: float, until: float) -> float | None:
    """Seconds from ``since`` until requests succeed again for good (0: none failed).

    Counts the requests that ended in [since, until): a request that outlived the
    stretch belongs to the next one (after the fault: to the heal). None when the
    last of them failed: the fault lasted for the whole stretch.
    """
    inside = sorted((o for o in outcomes if since <= o.end < until), key=lambda o: o.end)
    failures = [o for o in inside if not o.ok]
    if not failures:
        return 0.0
    last_failure = failures[-1]
    if not any(o.ok and o.end > last_failure.end for o in inside):
        return None
    return round(last_failure.end - since, 2)


@dataclass(frozen=True)
class Promise:
    """What the design promises during one drill, checked against its numbers."""

    text: str
    kept: Callable[[Numbers], bool]


@dataclass
class Verdict:
    drill: str
    target: str
    promises: list[tuple[str, bool]]
    lessons: list[str]
    numbers: Numbers
    window: Window

    @property
    def broken(self) -> list[str]:
        return [text for text, kept in self.promises if not kept]

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["promises"] = [{"promise": t, "kept": k} for t, k in self.promises]
        data["numbers"]["failed_pull_share"] = round(self.numbers.failed_pull_share, 4)
        data["numbers"]["failed_push_share"] = round(self.numbers.failed_push_share, 4)
        return data


def judge(
    drill: str, target: str, promises: list[Promise], lessons: list[str], found: Numbers,
    window: Window,
) -> Verdict:  # fmt: skip
    kept = [(p.text, bool(p.kept(found))) for p in promises]
    kept.append(("every acknowledged push pulls back unchanged from every registry",
                 not found.lost))  # fmt: skip
    return Verdict(drill, target, kept, lessons, found, window)


def fmt_seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"
