"""What a trainee reads about a phase: the tutorial section, why, the commands to type,
what done looks like, and where the kit differs from the tutorial.

Phases expose ``TUTORIAL``, ``trainee(ctx)`` and ``differences(ctx)``; a phase without
them still gets a page (its checks always exist). ``--explain``, ``--reset`` and the
handout all read them through here, so they say the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from lab.phases import phase_module
from lab.phases.context import PhaseContext
from lab.plan import TraineeCommand


@dataclass(frozen=True)
class DoneLooksLike:
    """One check as a trainee sees it: what is true, and the command that shows it."""

    what: str
    node: str | None
    command: str


@dataclass(frozen=True)
class PhaseGuide:
    name: str
    title: str
    tutorial: str
    explain: str
    commands: list[TraineeCommand]
    done: list[DoneLooksLike]
    differences: list[str]


def guide(name: str, ctx: PhaseContext) -> PhaseGuide:
    module = phase_module(name)
    return PhaseGuide(
        name=name,
        title=module.TITLE,
        tutorial=getattr(module, "TUTORIAL", "(not named)"),
        explain=module.EXPLAIN,
        commands=_call(module, "trainee", ctx),
        done=[DoneLooksLike(c.name, c.node, c.hint or c.command) for c in module.checks(ctx)],
        differences=_call(module, "differences", ctx),
    )


def _call(module: ModuleType, function: str, ctx: PhaseContext) -> list:  # type: ignore[type-arg]
    made = getattr(module, function, None)
    return list(made(ctx)) if made else []


def where(node: str | None) -> str:
    return node or "host"


def command_lines(g: PhaseGuide) -> list[str]:
    if not g.commands:
        return [f"  (no trainee commands yet: `inv phase {g.name} --dry-run` shows the kit's)"]
    lines = []
    for cmd in g.commands:
        mark = "" if cmd.run else " (read only)"
        lines.append(f"  # {cmd.why}{mark}")
        lines.append(f"  {where(cmd.node)}$ {cmd.command}")
    return lines


def explain_lines(g: PhaseGuide) -> list[str]:
    lines = [f"tutorial: {g.tutorial}", "", g.explain, "", "you type (`inv lab.ssh NODE`):"]
    lines += command_lines(g)
    lines += ["", "done looks like (each check, and the command that shows it):"]
    lines += [f"  - {d.what}\n    {where(d.node)}$ {d.command}" for d in g.done]
    if g.differences:
        lines += ["", "where the kit differs from the tutorial:"]
        lines += [f"  - {d}" for d in g.differences]
    return lines


def next_steps_lines(g: PhaseGuide) -> list[str]:
    return [
        f"the lab is now just before phase {g.name}: your turn.",
        "log in with `inv lab.ssh NODE` (or `inv lab.ssh NODE -- COMMAND`), then:",
        *command_lines(g),
        f"grade it: inv phase {g.name} --check",
        f"see the kit's solution: inv phase {g.name}",
    ]
