#!/usr/bin/env python3
"""Bring-up of the whole lab (`inv lab.up --provider local`): seconds per phase.

    python bench/bench_phases.py [--quick] [--out docs/perf]

Brings up the benchmark lab (lab.yaml's topology under its own name and subnet,
images cached), reads each phase's seconds from state.json and the wall time of the
whole `inv lab.up` (nodes, render, validate, nine phases, ten checkpoints). Goal: the
whole bring-up within 90 s, as it was when issue 15 was filed (64-84 s).
"""

from __future__ import annotations

from pathlib import Path

import perf

NAME = "phases"
GOAL_SECONDS = 90.0


def plot(data: dict, out_dir: Path) -> Path:
    phases = data["phases"]
    fig, ax = perf.figure("inv lab.up --provider local: where the bring-up goes")
    other = max(0.0, data["lab_up_seconds"] - sum(phases.values()))
    labels = [*phases, "rest"]
    values = [*phases.values(), other]
    bottom = 0.0
    colors = __import__("matplotlib").colormaps["tab20"]
    for index, (label, value) in enumerate(zip(labels, values, strict=True)):
        shown = f"{label} {value:.1f} s"
        ax.bar(["lab.up"], [value], bottom=bottom, color=colors(index), label=shown)
        bottom += value
    ax.set_ylabel("seconds")
    ax.set_ylim(0, max(GOAL_SECONDS, bottom) * 1.15)
    ax.set_xlim(-1.5, 1.5)
    perf.goal_line(ax, GOAL_SECONDS, f"goal: lab.up within {GOAL_SECONDS:.0f} s")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    ax.text(0, bottom, f"{bottom:.0f} s", ha="center", va="bottom")
    return perf.save_plot(fig, out_dir, NAME)


def main(out_dir: Path, quick: bool = False) -> dict:
    from lab.phases import PHASES

    with perf.shared_lab() as lab:
        total = lab.up_seconds or 0.0
        phases = {p: lab.phase_seconds[p] for p in PHASES if p in lab.phase_seconds}
    ratio = round(total / GOAL_SECONDS, 3)
    data = perf.result(
        NAME,
        quick,
        goal={"lab_up_seconds_at_most": GOAL_SECONDS},
        verdict=f"lab.up {total:.0f} s ({ratio:.2f}x the {GOAL_SECONDS:.0f} s goal)",
        met=total <= GOAL_SECONDS,
        lab_up_seconds=round(total, 1),
        phases=phases,
        ratio_to_goal=ratio,
        note="'rest' is render, validate, nodes, checkpoints and Invoke's start",
    )
    return perf.publish(out_dir, data, plot)


if __name__ == "__main__":
    perf.run_as_script(main)
