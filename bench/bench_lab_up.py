#!/usr/bin/env python3
"""Benchmark: a full `inv lab.up --provider local`, then `inv phase registry`.

    python bench/bench_lab_up.py [--keep]

Runs the default lab's topology under a lab of its own (hrl-phases,
10.213.14.0/24), records the seconds of every phase from state.json and the
wall time of a replay of the registry phase, prints a table and writes
build/bench/lab-up.json. Destroys the lab at the end unless --keep.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
NAME, SUBNET = "hrl-phases", "10.213.14"


def inv(*args: str) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, check=True)
    return time.monotonic() - started


def main() -> int:
    out = REPO / "build" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load((REPO / "lab.yaml").read_text())
    data["name"], data["network"] = NAME, {"subnet": f"{SUBNET}.0/24"}
    for i, node in enumerate(data["nodes"], start=1):
        node["ip"] = f"{SUBNET}.{10 + i}"
    spec_file = out / f"{NAME}.yaml"
    spec_file.write_text(yaml.safe_dump(data, sort_keys=False))
    where = ["--spec", str(spec_file), "--out", str(out / NAME)]
    try:
        total = inv("lab.up", "--provider", "local", *where)
        state = json.loads((out / NAME / "state.json").read_text())
        replay = inv("phase", "registry", *where)
    finally:
        if "--keep" not in sys.argv:
            subprocess.run([sys.executable, "-m", "invoke", "lab.destroy", *where], cwd=REPO)
    from lab.phases import PHASES

    phases = {name: state["phases"][name]["seconds"] for name in PHASES}
    result = {
        "lab_up_seconds": round(total, 1),
        "phases": phases,
        "phase_registry_replay_seconds": round(replay, 1),
    }
    (out / "lab-up.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'phase':<10} seconds (checkpoints not included)")
    for name, seconds in phases.items():
        print(f"{name:<10} {seconds:>7.1f}")
    print(f"lab.up total {total:.1f} s; inv phase registry {replay:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
