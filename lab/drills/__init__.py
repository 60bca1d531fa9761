"""Failure drills: break one part of a running lab under load, heal it, measure, and
say whether the design kept its promises (``inv lab.drill``)."""

from __future__ import annotations

from rich.table import Table

from lab.drills.faults import DESCRIPTIONS, DRILLS, layout_lessons
from lab.drills.report import Verdict, fmt_seconds

__all__ = ["DESCRIPTIONS", "DRILLS", "layout_lessons", "summary_table"]


def summary_table(verdicts: list[Verdict]) -> Table:
    table = Table(title="drills")
    for column in ("drill", "fault", "requests", "failed pulls", "failed pushes", "longest gap",
                   "first failure", "recovered", "after heal", "leader changes", "lost",
                   "promises"):  # fmt: skip
        table.add_column(column)
    for v in verdicts:
        n = v.numbers
        first = n.first_failure_after_fault
        table.add_row(
            v.drill, v.target, str(n.requests),
            f"{n.failed_pulls}/{n.pulls} ({n.failed_pull_share:.1%})",
            f"{n.failed_pushes}/{n.pushes} ({n.failed_push_share:.1%})",
            fmt_seconds(n.longest_gap),
            "-" if first is None else fmt_seconds(first),
            fmt_seconds(n.recovery_after_fault), fmt_seconds(n.recovery_after_heal),
            str(n.leader_changes), str(len(n.lost)),
            "kept" if not v.broken else "[red]BROKEN[/red]",
        )  # fmt: skip
    return table
