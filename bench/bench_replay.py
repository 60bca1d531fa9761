#!/usr/bin/env python3
"""Replay of each phase (`inv phase X`: restore, run X, checkpoint) against 20 s.

    python bench/bench_replay.py [--quick] [--out docs/perf]

On the benchmark lab (images cached), runs `inv phase X` for every phase in the
tutorial's order (--quick: labels, minio, registry, verify), twice each (once with
--quick), and records the wall time a trainee waits, split into the restore, the
phase itself and the rest (Invoke's start, render, the checkpoint). Goal: 20 s per
replay (issue 15). The last replay is verify, so the lab is whole afterwards.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path

import perf

NAME = "replay"
GOAL_SECONDS = 20.0
QUICK_PHASES = ("labels", "minio", "registry", "verify")
RESTORED = re.compile(r"restored \S+ in ([0-9.]+) s")
PASSED = re.compile(r"phase \S+ passed in ([0-9.]+) s")


def parse(output: str) -> tuple[float, float]:
    """(restore seconds, phase seconds) from `inv phase`'s own lines."""
    restored, passed = RESTORED.search(output), PASSED.search(output)
    if not (restored and passed):
        raise RuntimeError("`inv phase` printed no 'restored ... in' / 'passed in' line")
    return float(restored.group(1)), float(passed.group(1))


def replay(lab: perf.BenchLab, phase: str) -> dict[str, float]:
    total, output = perf.inv_output("phase", phase, *lab.where)
    restore, seconds = parse(output)
    return {
        "total": round(total, 1),
        "restore": restore,
        "phase": seconds,
        "rest": round(max(0.0, total - restore - seconds), 1),
    }


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run whose total is the median (its parts stay consistent with each other)."""
    ordered = sorted(runs, key=lambda run: run["total"])
    return ordered[(len(ordered) - 1) // 2]


def plot(data: dict, out_dir: Path) -> Path:
    fig, ax = perf.figure("inv phase X on the local provider (median run)", size=(8, 4.6))
    names = list(data["phases"])
    parts = (("restore", "tab:orange"), ("phase", "tab:blue"), ("rest", "tab:gray"))
    left = [0.0] * len(names)
    for part, color in parts:
        values = [data["phases"][n][part] for n in names]
        ax.barh(names, values, left=left, color=color, label=part)
        left = [a + b for a, b in zip(left, values, strict=True)]
    for y, total in enumerate(left):
        ax.text(total + 0.3, y, f"{total:.0f} s", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.grid(axis="x", alpha=0.3)
    perf.goal_line(ax, GOAL_SECONDS, f"goal {GOAL_SECONDS:.0f} s", horizontal=False)
    return perf.save_plot(fig, out_dir, NAME)


def main(out_dir: Path, quick: bool = False) -> dict:
    from lab.phases import PHASES

    phases = QUICK_PHASES if quick else PHASES
    repeats = 1 if quick else 2
    runs: dict[str, list[dict[str, float]]] = {p: [] for p in phases}
    with perf.shared_lab() as lab:
        for _ in range(repeats):
            for phase in phases:
                runs[phase].append(replay(lab, phase))
    medians = {phase: median_run(runs[phase]) for phase in phases}
    over = [p for p, run in medians.items() if run["total"] > GOAL_SECONDS]
    worst = max(medians, key=lambda p: medians[p]["total"])
    data = perf.result(
        NAME,
        quick,
        goal={"replay_seconds_at_most": GOAL_SECONDS},
        verdict=(
            f"{len(phases) - len(over)}/{len(phases)} phases within {GOAL_SECONDS:.0f} s; "
            f"slowest {worst} {medians[worst]['total']:.0f} s "
            f"({medians[worst]['total'] / GOAL_SECONDS:.2f}x the goal)"
        ),
        met=not over,
        phases=medians,
        ratio_to_goal={p: round(r["total"] / GOAL_SECONDS, 2) for p, r in medians.items()},
        restore_median_seconds=round(statistics.median(r["restore"] for r in medians.values()), 1),
        runs=runs,
    )
    return perf.publish(out_dir, data, plot)


if __name__ == "__main__":
    perf.run_as_script(main)
