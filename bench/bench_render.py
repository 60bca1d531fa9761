#!/usr/bin/env python3
"""Render and validate lab.yaml (no lab needed): seconds against their budgets.

    python bench/bench_render.py [--quick] [--out docs/perf]

Renders the default lab.yaml into a scratch directory several times and validates
the result (every file through its real consumer), in this process. Budgets:
render 1 s, validate 5 s (measured 0.5 s and 3.4 s when issue 15 was filed).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import perf

NAME = "render"
BUDGETS = {"render": 1.0, "validate": 5.0}  # seconds


def timed(action) -> float:  # noqa: ANN001 - any callable
    started = time.monotonic()
    action()
    return time.monotonic() - started


def measure(quick: bool) -> dict[str, dict[str, float]]:
    from lab.paths import DEFAULT_SPEC
    from lab.render import render
    from lab.spec import load_spec
    from lab.validate import all_ok, validate

    spec = load_spec(DEFAULT_SPEC)
    renders, validates = [], []
    with tempfile.TemporaryDirectory(prefix="hrl-bench-render-") as scratch:
        build = Path(scratch) / "build"
        render(spec, build)  # secrets are made once, outside the timing
        for _ in range(3 if quick else 7):
            renders.append(timed(lambda: render(spec, build)))
        for _ in range(1 if quick else 3):
            started = time.monotonic()
            outcome = validate(build, spec)
            validates.append(time.monotonic() - started)
            if not all_ok(outcome):
                bad = [r.file for r in outcome if not r.ok]
                raise RuntimeError(f"validation failed: {', '.join(bad)}")
    return {"render": perf.summary(renders), "validate": perf.summary(validates)}


def plot(data: dict, out_dir: Path) -> Path:
    fig, ax = perf.figure("render and validate lab.yaml: p50 against the budget")
    names = list(BUDGETS)
    ratios = [data["seconds"][n]["p50"] / BUDGETS[n] for n in names]
    bars = ax.bar(names, ratios, color="tab:blue", width=0.5)
    for bar, name in zip(bars, names, strict=True):
        seconds = data["seconds"][name]["p50"]
        where = (bar.get_x() + bar.get_width() / 2, bar.get_height())
        label = f"{seconds:.2f} s / {BUDGETS[name]:.0f} s"
        ax.annotate(label, where, ha="center", va="bottom", fontsize=9)
    ax.set_ylabel("p50 / budget")
    ax.set_ylim(0, max(1.3, max(ratios) * 1.2))
    perf.goal_line(ax, 1.0, "budget (render 1 s, validate 5 s)")
    return perf.save_plot(fig, out_dir, NAME)


def main(out_dir: Path, quick: bool = False) -> dict:
    seconds = measure(quick)
    ratios = {n: round(seconds[n]["p50"] / BUDGETS[n], 3) for n in BUDGETS}
    within = all(r <= 1.0 for r in ratios.values())
    verdict = ", ".join(f"{n} {seconds[n]['p50']:.2f} s ({ratios[n]:.2f}x budget)" for n in BUDGETS)
    data = perf.result(
        NAME,
        quick,
        goal={"seconds_at_most": BUDGETS},
        verdict=("within budget: " if within else "OVER budget: ") + verdict,
        met=within,
        seconds=seconds,
        ratio_to_budget=ratios,
    )
    return perf.publish(out_dir, data, plot)


if __name__ == "__main__":
    perf.run_as_script(main)
