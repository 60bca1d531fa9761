#!/usr/bin/env python3
"""Bring-up of 3, 5 and 7 nodes: seconds and the ratio to 3 nodes.

    python bench/bench_nodes.py [--quick] [--out docs/perf]

Full: a whole `inv lab.up --provider local` of lab.yaml's topology with 3, 5 and 7
nodes (every node a swarm manager; the four MinIO instances stay on the first three).
--quick: the nodes and a swarm of them only (what bench_local_up.py measured). Each lab
has a name and subnet of its own (the benchmark lab's subnet + 1) and is destroyed
after. Goal line: no worse than linear, N/3 of the 3-node time.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import perf

NAME = "nodes"
COUNTS = (3, 5, 7)


def swarm_only(lab: perf.BenchLab) -> float:
    """Nodes up and a swarm of all of them as managers, in this process; seconds."""
    from lab.providers.local import LocalProvider
    from lab.remote import Remote, known_hosts_file
    from lab.spec import load_spec
    from tests.system.local_lab import form_swarm, write_lab

    with tempfile.TemporaryDirectory(prefix="hrl-bench-nodes-") as tmp:
        spec = load_spec(write_lab(Path(tmp), perf.lab_data(lab.name, lab.subnet, lab.nodes)))
        build = Path(tmp) / "build"
        provider = LocalProvider(spec, build)
        try:
            started = time.monotonic()
            provider.up()
            with Remote(provider.nodes(), known_hosts_file(build), printer=None) as remote:
                form_swarm(remote, provider)
            return time.monotonic() - started
        finally:
            provider.destroy()


def bring_up(count: int, quick: bool) -> float:
    lab = perf.BenchLab(f"{perf.bench_lab_name()}-n{count}", perf.bench_subnet(1), count)
    if quick:
        return swarm_only(lab)
    lab.destroy()
    try:
        return lab.up("--skip-validate")
    finally:
        lab.destroy()


def plot(data: dict, out_dir: Path) -> Path:
    what = "nodes + swarm" if data["quick"] else "inv lab.up"
    fig, ax = perf.figure(f"{what} with 3, 5 and 7 nodes: time / the 3-node time")
    counts = [int(c) for c in data["seconds"]]
    ratios = [data["ratio_to_3"][str(c)] for c in counts]
    bars = ax.bar([str(c) for c in counts], ratios, color="tab:blue", width=0.5)
    for bar, count in zip(bars, counts, strict=True):
        label = f"{ratios[counts.index(count)]:.2f}x ({data['seconds'][str(count)]:.0f} s)"
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), label,
                ha="center", va="bottom", fontsize=8)  # fmt: skip
    ax.plot([str(c) for c in counts], [c / 3 for c in counts], color="tab:red", linestyle="--",
            label="goal: at most linear (N/3)")  # fmt: skip
    ax.set_xlabel("nodes (all managers)")
    ax.set_ylabel("time / 3-node time")
    ax.set_ylim(0, max(2.6, max(ratios) * 1.2))
    ax.legend(fontsize=8)
    return perf.save_plot(fig, out_dir, NAME)


def main(out_dir: Path, quick: bool = False) -> dict:
    seconds = {str(count): round(bring_up(count, quick), 1) for count in COUNTS}
    base = seconds["3"]
    ratios = {count: round(value / base, 3) for count, value in seconds.items()}
    linear = all(ratios[str(c)] <= c / 3 for c in COUNTS)
    data = perf.result(
        NAME,
        quick,
        goal={"ratio_to_3_at_most": {str(c): round(c / 3, 3) for c in COUNTS}},
        verdict=f"5 nodes {ratios['5']:.2f}x, 7 nodes {ratios['7']:.2f}x the 3-node bring-up"
        + (" (at most linear)" if linear else " (WORSE than linear)"),
        met=linear,
        measured="nodes + swarm" if quick else "inv lab.up --skip-validate",
        seconds=seconds,
        ratio_to_3=ratios,
    )
    return perf.publish(out_dir, data, plot)


if __name__ == "__main__":
    perf.run_as_script(main)
