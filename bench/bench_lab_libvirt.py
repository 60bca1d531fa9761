#!/usr/bin/env python3
"""Benchmark: a full `inv lab.up --provider libvirt` on three emulated VMs, through verify.

    python bench/bench_lab_libvirt.py [--keep] [--memory MiB]

Runs the default lab's topology as a lab of its own (vmbench, 10.232.10.0/24) with
vagrant-libvirt and QEMU, records the seconds of bringing the VMs up and of every
phase (state.json), then the wall time of `inv phase labels` and `inv phase registry`
(restore of real VM snapshots + replay) and of `inv lab.destroy`; prints a table and
writes build/bench/lab-libvirt.json. Builds the box if needed (about 4 min). Destroys
the lab at the end unless --keep. Expect about 20 min on 2 cores: every docker command
in an emulated guest takes 10-20 s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lab.phases import PHASES  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
NAME, SUBNET = "vmbench", "10.232.10"


def inv(*args: str, check: bool = True) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, check=check)
    return time.monotonic() - started


def write_spec(out: Path, memory: int) -> Path:
    data = yaml.safe_load((REPO / "lab.yaml").read_text())
    data["name"], data["network"] = NAME, {"subnet": f"{SUBNET}.0/24"}
    for i, node in enumerate(data["nodes"], start=1):
        node.update(ip=f"{SUBNET}.{10 + i}", memory=memory, cpus=1)
    spec_file = out / f"{NAME}.yaml"
    spec_file.write_text(yaml.safe_dump(data, sort_keys=False))
    return spec_file


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the lab up at the end")
    parser.add_argument("--memory", type=int, default=1536, help="MiB per VM")
    options = parser.parse_args()
    out = REPO / "build" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    where = ["--spec", str(write_spec(out, options.memory)), "--out", str(out / NAME)]
    result: dict[str, object] = {"memory_mib": options.memory}
    try:
        result["lab_up_seconds"] = round(inv("lab.up", "--provider", "libvirt", *where), 1)
        state = json.loads((out / NAME / "state.json").read_text())["phases"]
        result["phases"] = {p: round(state[p]["seconds"], 1) for p in PHASES if p in state}
        for replayed in ("labels", "registry"):
            seconds = inv("phase", replayed, *where)
            result[f"phase_{replayed}_replay_seconds"] = round(seconds, 1)
    finally:
        if not options.keep:
            result["destroy_seconds"] = round(inv("lab.destroy", *where, check=False), 1)
        (out / "lab-libvirt.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'phase':<10} seconds (checkpoints not included)")
    for name, seconds in result["phases"].items():  # type: ignore[union-attr]
        print(f"{name:<10} {seconds:>7.1f}")
    print(
        f"lab.up total {result['lab_up_seconds']} s; "
        f"inv phase labels {result['phase_labels_replay_seconds']} s; "
        f"inv phase registry {result['phase_registry_replay_seconds']} s; "
        f"destroy {result.get('destroy_seconds', '-')} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
