#!/usr/bin/env python3
"""The lab on three emulated VMs (libvirt, QEMU): bring-up, replays, destroy.

    python bench/bench_libvirt.py [--quick] [--out docs/perf]
    python bench/run.py --only libvirt          # not in a default run: about 20 minutes

A whole `inv lab.up --provider libvirt` of lab.yaml's topology as a lab of its own
(HRL_BENCH_LAB-vm, 1 vCPU and 1.5 GiB per VM, the benchmark subnet + 2), the seconds
of every phase (state.json), then `inv phase labels` and `inv phase registry`
(restore of real VM snapshots + replay) and `inv lab.destroy`. --quick stops after
labels and replays only labels (about 8 minutes). Builds the box first if needed
(about 4 min). Goal line: the 20 s a replay may take on the local provider; on
emulated VMs every docker command takes 10-20 s, so this shows the distance.
"""

from __future__ import annotations

import json
from pathlib import Path

import perf
import yaml

NAME = "libvirt"
OPTIONAL = True  # 20 minutes of emulated VMs: only when asked for by name
GOAL_SECONDS = 20.0
MEMORY_MIB = 1536


def write_spec(lab: perf.BenchLab) -> None:
    perf.BUILD.mkdir(parents=True, exist_ok=True)
    data = perf.lab_data(lab.name, lab.subnet)
    for node in data["nodes"]:
        node.update(memory=MEMORY_MIB, cpus=1)
    lab.spec_file.write_text(yaml.safe_dump(data, sort_keys=False))


def run(lab: perf.BenchLab, quick: bool) -> dict:
    result: dict = {"memory_mib": MEMORY_MIB}
    until = ["--until", "labels"] if quick else []
    result["lab_up_seconds"] = round(
        perf.inv("lab.up", "--provider", "libvirt", *lab.where, *until), 1
    )
    state = json.loads((lab.build / "state.json").read_text())["phases"]
    result["phases"] = {p: round(r["seconds"], 1) for p, r in state.items()}
    result["replays"] = {}
    for phase in ("labels",) if quick else ("labels", "registry"):
        result["replays"][phase] = round(perf.inv("phase", phase, *lab.where), 1)
    return result


def plot(data: dict, out_dir: Path) -> Path:
    fig, (ax, bx) = perf.figure(
        "three emulated VMs (libvirt, QEMU TCG)", size=(10, 4.2), widths=(2, 1)
    )
    phases = data["phases"]
    ax.bar(list(phases), list(phases.values()), color="tab:blue")
    ax.set_title("phases of lab.up (s)", fontsize=10)
    ax.tick_params(axis="x", rotation=45, labelsize=8)
    replays = data["replays"]
    bx.bar([f"phase {p}" for p in replays], list(replays.values()), color="tab:orange")
    bx.set_title("inv phase X (s)", fontsize=10)
    perf.goal_line(bx, GOAL_SECONDS, f"local provider's goal {GOAL_SECONDS:.0f} s")
    return perf.save_plot(fig, out_dir, NAME)


def main(out_dir: Path, quick: bool = False) -> dict:
    lab = perf.BenchLab(f"{perf.bench_lab_name()}-vm", perf.bench_subnet(2))
    write_spec(lab)
    try:
        measured = run(lab, quick)
    finally:
        seconds = perf.inv("lab.destroy", *lab.where, check=False)
    measured["destroy_seconds"] = round(seconds, 1)
    worst = max(measured["replays"].values())
    data = perf.result(
        NAME,
        quick,
        goal={"replay_seconds_at_most": GOAL_SECONDS},
        verdict=f"lab.up {measured['lab_up_seconds']:.0f} s; slowest replay {worst:.0f} s "
        f"({worst / GOAL_SECONDS:.1f}x the local provider's goal)",
        met=worst <= GOAL_SECONDS,
        **measured,
    )
    return perf.publish(out_dir, data, plot)


if __name__ == "__main__":
    perf.run_as_script(main)
