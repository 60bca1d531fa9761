#!/usr/bin/env python3
"""Benchmark: how many trainees one server holds. A class of 1, 2, 4 and 8 labs.

    python bench/bench_class.py [--quick] [--sizes 1,2,4] [--parallel 2] [--out DIR]

For each size: `inv class.up` (full labs, a bounded number at once), the wall time;
then, once the labs have settled, the memory of every lab's processes (PSS and RSS
from `inv class.status --json`) and how much MemAvailable the host lost; then
`inv class.destroy`, timed. Writes ``<out>/class.json`` and ``<out>/class.png``
(default docs/perf/). ``--quick`` measures 1 and 2 labs up to the swarm phase only
(a smoke run: its memory is not a full lab's).

The labs are `clsb-N` in 10.215.64.0/18 with the class's SSH door on port 2216, so
they meet neither the system test's class nor another lab.
`bench/run.py` calls ``main(out_dir, quick)``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
NAME, POOL, SSH_PORT = "clsb", "10.215.64.0/18", "2216"
SIZES, QUICK_SIZES = (1, 2, 4, 8), (1, 2)
SETTLE_SECONDS = 30  # after the last phase the swarm and MinIO still move pages around
HOST_RESERVE_GB = 2  # what the host itself keeps (kernel, sshd, the instructor's tools)


def _inv(*args: str, check: bool = True) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, text=True,
                          capture_output=True, check=False)  # fmt: skip
    if check and proc.returncode != 0:
        raise RuntimeError(f"inv {' '.join(args)} failed:\n{proc.stdout[-2000:]}{proc.stderr}")
    return time.monotonic() - started, proc


def mem_available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(template: Path, labs: int, parallel: int, until: str | None) -> dict[str, Any]:
    """One class of ``labs``: bring-up time, memory at rest, destroy time."""
    where = ["--spec", str(template)]
    before = mem_available_mb()
    extra = ["--until", until] if until else []
    try:
        up_seconds, up = _inv("class.up", "--trainees", str(labs), *where, "--pool", POOL,
                              "--parallel", str(parallel), "--ssh-port", SSH_PORT, *extra,
                              check=False)  # fmt: skip
        time.sleep(SETTLE_SECONDS)
        _, shown = _inv("class.status", "--json", *where)
        status = json.loads(shown.stdout)
        after = mem_available_mb()
    finally:
        destroy_seconds, _ = _inv("class.destroy", *where, check=False)
    memory = [lab["memory"] for lab in status["labs"]]
    failed = [lab["lab"] for lab in status["labs"] if lab["summary"]["kit"] < _phases(until)]
    return {
        "labs": labs,
        "parallel": parallel,
        "up_seconds": round(up_seconds, 1),
        "up_ok": up.returncode == 0,
        "failed_labs": failed,
        "failures": [line.strip() for line in up.stdout.splitlines() if "FAILED" in line],
        "pss_mb_per_lab": round(sum(m["pss_mb"] for m in memory) / labs, 1),
        "rss_mb_per_lab": round(sum(m["rss_mb"] for m in memory) / labs, 1),
        "processes_per_lab": round(sum(m["processes"] for m in memory) / labs, 1),
        "total_pss_mb": round(sum(m["pss_mb"] for m in memory), 1),
        "mem_available_drop_mb": round(before - after, 1),
        "destroy_seconds": round(destroy_seconds, 1),
    }


def _phases(until: str | None) -> int:
    from lab.phases import PHASES

    return PHASES.index(until) + 1 if until else len(PHASES)


def capacity(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Trainees per server size, from the largest class measured: the larger of PSS per
    lab and the host's MemAvailable drop per lab (which also counts kernel memory)."""
    biggest = max(runs, key=lambda r: r["labs"])
    per_lab = max(biggest["pss_mb_per_lab"], biggest["mem_available_drop_mb"] / biggest["labs"])
    gbs = (8, 16, 24, 32, 64)
    sizes = {f"{gb} GB": int((gb - HOST_RESERVE_GB) * 1024 // per_lab) for gb in gbs}
    return {"per_lab_mb": round(per_lab, 1), "from_labs": biggest["labs"],
            "host_reserve_gb": HOST_RESERVE_GB, "trainees_by_memory": sizes}  # fmt: skip


def plot(result: dict[str, Any], target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    labs = [r["labs"] for r in runs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(labs, [r["up_seconds"] for r in runs], "o-", label="class.up (wall)")
    left.plot(labs, [r["destroy_seconds"] for r in runs], "s-", label="class.destroy")
    left.set(xlabel="labs", ylabel="seconds", xticks=labs,
             title=f"bring-up, {result['parallel']} at a time")  # fmt: skip
    left.legend()
    right.plot(labs, [r["total_pss_mb"] / 1024 for r in runs], "o-", label="PSS of the labs")
    right.plot(labs, [r["mem_available_drop_mb"] / 1024 for r in runs], "s-",
               label="MemAvailable lost")  # fmt: skip
    right.set(xlabel="labs", ylabel="GB", xticks=labs, title="memory at rest")
    right.legend()
    fig.suptitle(f"a class on one server ({result['machine']['cores']} cores, "
                 f"{result['machine']['memory_gb']:.0f} GB)")  # fmt: skip
    fig.tight_layout()
    fig.savefig(target, dpi=100)
    plt.close(fig)


def main(out_dir: Path, quick: bool = False, sizes: tuple[int, ...] | None = None,
         parallel: int = 2) -> dict[str, Any]:  # fmt: skip
    """Measure, write ``out_dir/class.json`` and ``out_dir/class.png``, return the numbers."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    until = "swarm" if quick else None
    chosen = sizes or (QUICK_SIZES if quick else SIZES)
    data = yaml.safe_load((REPO / "lab.yaml").read_text())
    data["name"] = NAME
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template.yaml"
        template.write_text(yaml.safe_dump(data, sort_keys=False))
        for labs in chosen:
            print(f"class of {labs} ...", flush=True)
            runs.append(measure(template, labs, parallel, until))
            print(json.dumps(runs[-1]), flush=True)
    result = {
        "name": "class",
        "goal": {},  # no target: the figure sizes a server, it does not pass or fail
        "verdict": verdict(runs, capacity(runs)),
        "machine": {"cores": os.cpu_count(), "memory_gb": round(_total_gb(), 1),
                    "load_average_at_end": os.getloadavg()[0]},  # fmt: skip
        "parallel": parallel,
        "until": until or "verify (full labs)",
        "runs": runs,
        "capacity": capacity(runs),
    }
    (out_dir / "class.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, out_dir / "class.png")
    return result


def verdict(runs: list[dict[str, Any]], sizing: dict[str, Any]) -> str:
    """One line for bench/run.py's index: the largest class, and what memory allows."""
    last = runs[-1]
    by_memory = sizing.get("trainees_by_memory", {})
    return (f"{last['labs']} labs up in {last['up_seconds']:.0f} s, "
            f"{last['pss_mb_per_lab']:.0f} MB PSS each; by memory "
            + ", ".join(f"{n} trainees on {size}" for size, n in by_memory.items()))  # fmt: skip


def _total_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", help="comma-separated class sizes, e.g. 1,2,4")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--out", default=str(REPO / "docs" / "perf"))
    args = parser.parse_args()
    picked = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else None
    outcome = main(Path(args.out), args.quick, picked, args.parallel)
    print(json.dumps(outcome["capacity"], indent=2))
