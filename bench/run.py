#!/usr/bin/env python3
"""One runner for every benchmark: JSON results and PNG plots in docs/perf/.

    python bench/run.py                      # every default benchmark, full size
    python bench/run.py --quick              # smaller samples, fewer phases and sizes
    python bench/run.py --only lb --only replay
    python bench/run.py --list               # what is there, and what runs by default
    python bench/run.py --out /tmp/perf      # somewhere else than docs/perf

A benchmark is a module ``bench/bench_<name>.py`` with
``def main(out_dir: Path, quick: bool = False) -> dict`` that writes
``<out_dir>/<name>.json`` and ``<out_dir>/<name>.png`` and returns the result. A module
that sets ``OPTIONAL = True`` (the VM benchmark: 20 minutes) runs only when named with
``--only``. Benchmarks that need a running lab share one (bench/perf.py), brought up
once with its own name and subnet (HRL_BENCH_LAB, HRL_BENCH_SUBNET) and destroyed at
the end. ``<out_dir>/index.json`` lists what ran, how long it took and its verdict.
Run as root from the checkout (the lab is the local provider's).
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DEFAULT_OUT = REPO / "docs" / "perf"
# The order of a full run: the cheap ones first, then those on the shared lab, then
# those that bring up labs of their own. Benchmarks not named here run after these.
ORDER = ("render", "phases", "replay", "lb", "cache", "nodes", "class")
# Benchmarks other issues add: their absence is a line in the output, not an error.
EXPECTED = {"class": "bench/bench_class.py (labs per host) comes with the classroom, issue 13"}


@dataclass
class Record:
    """One benchmark's outcome, as index.json lists it."""

    name: str
    status: str  # ok | failed | missing | invalid
    seconds: float = 0.0
    verdict: str = ""
    detail: str = ""


def discover(bench_dir: Path = BENCH_DIR) -> dict[str, Path]:
    """Benchmark name -> module file, for every ``bench_<name>.py`` in ``bench_dir``."""
    return {
        path.stem.removeprefix("bench_"): path
        for path in sorted(bench_dir.glob("bench_*.py"))
        if path.stem != "bench_"
    }


def load(name: str, path: Path) -> ModuleType:
    """Import a benchmark module from its file (bench/ is not a package)."""
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))  # its sibling perf.py
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def interface_problem(module: ModuleType) -> str | None:
    """Why ``module`` is not a benchmark (None when its main has the agreed signature)."""
    main = getattr(module, "main", None)
    if not callable(main):
        return "it has no main(out_dir, quick=False)"
    parameters = list(inspect.signature(main).parameters)
    if parameters[:2] != ["out_dir", "quick"]:
        return f"its main takes ({', '.join(parameters)}), not (out_dir, quick=False)"
    return None


def ordered(names: Sequence[str]) -> list[str]:
    known = [n for n in ORDER if n in names]
    return known + sorted(n for n in names if n not in ORDER)


def select(available: dict[str, Path], only: Sequence[str], optional: set[str]) -> list[str]:
    """The benchmarks to run, in ORDER: all but the optional ones, or exactly ``only``.
    Names that are neither available nor expected are a usage error."""
    unknown = [n for n in only if n not in available and n not in EXPECTED]
    if unknown:
        raise SystemExit(
            f"no benchmark {', '.join(unknown)}; there are: {', '.join(ordered(list(available)))}"
        )
    if only:
        return ordered(list(dict.fromkeys(only)))
    names = [n for n in available if n not in optional] + [n for n in EXPECTED]
    return ordered(list(dict.fromkeys(names)))


def check_result(name: str, data: object, out_dir: Path) -> str | None:
    """What is wrong with a benchmark's output (None when the files and shape are right)."""
    if not isinstance(data, dict):
        return f"main returned {type(data).__name__}, not a dict"
    missing = [key for key in ("name", "goal", "verdict") if key not in data]
    if missing:
        return f"its result has no {', '.join(missing)}"
    for suffix in ("json", "png"):
        if not (out_dir / f"{name}.{suffix}").is_file():
            return f"it wrote no {name}.{suffix}"
    return None


def run_one(name: str, path: Path | None, out_dir: Path, quick: bool) -> Record:
    if path is None:
        return Record(name, "missing", detail=EXPECTED.get(name, "no such file"))
    started = time.monotonic()
    try:
        module = load(name, path)
        problem = interface_problem(module)
        if problem:
            return Record(name, "invalid", detail=f"{path.name}: {problem}")
        data = module.main(out_dir, quick=quick)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # one broken benchmark must not stop the others
        traceback.print_exc()
        detail = f"{type(exc).__name__}: {exc}"
        return Record(name, "failed", round(time.monotonic() - started, 1), detail=detail)
    seconds = round(time.monotonic() - started, 1)
    problem = check_result(name, data, out_dir)
    if problem:
        return Record(name, "invalid", seconds, detail=problem)
    return Record(name, "ok", seconds, verdict=str(data["verdict"]))


def line(record: Record) -> str:
    if record.status == "missing":
        return f"{record.name:<8} not there: {record.detail}"
    if record.status == "ok":
        return f"{record.name:<8} ok in {record.seconds:.0f} s: {record.verdict}"
    return f"{record.name:<8} {record.status.upper()} after {record.seconds:.0f} s: {record.detail}"


def earlier_records(path: Path) -> dict[str, dict]:
    """The entries of an index.json already there, by name, each with its own ``quick``."""
    try:
        body = json.loads(path.read_text())
        return {b["name"]: {"quick": body.get("quick", False), **b} for b in body["benchmarks"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def write_index(out_dir: Path, records: list[Record], quick: bool) -> Path:
    """This run's records, and the earlier ones of the benchmarks it did not run: a run
    of one benchmark must not drop what the others measured from the index."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "index.json"
    entries = earlier_records(path) | {r.name: {"quick": quick, **asdict(r)} for r in records}
    body = {"quick": quick, "benchmarks": [entries[name] for name in ordered(list(entries))]}
    path.write_text(json.dumps(body, indent=2) + "\n")
    return path


def list_lines(available: dict[str, Path], optional: set[str]) -> list[str]:
    lines = []
    for name in ordered(list(available) + [n for n in EXPECTED if n not in available]):
        path = available.get(name)
        if path is None:
            lines.append(f"{name:<8} (not there) {EXPECTED[name]}")
            continue
        doc = (load(name, path).__doc__ or "").strip().splitlines()
        when = "only with --only" if name in optional else "default"
        lines.append(f"{name:<8} [{when}] {doc[0] if doc else ''}")
    return lines


def optional_names(available: dict[str, Path]) -> set[str]:
    return {n for n, p in available.items() if getattr(load(n, p), "OPTIONAL", False)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="run only this benchmark (repeatable)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="smaller samples (minutes)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="default docs/perf")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and stop")
    options = parser.parse_args(argv)
    available = discover()
    optional = optional_names(available)
    if options.list:
        print("\n".join(list_lines(available, optional)))
        return 0
    try:
        names = select(available, options.only, optional)
    except SystemExit as unknown:
        parser.error(str(unknown))  # a usage error: one line, exit 2
    out_dir = options.out.resolve()
    sys.path.insert(0, str(BENCH_DIR))
    import perf

    perf.keep_shared()
    records: list[Record] = []
    try:
        for name in names:
            print(f"=== benchmark {name}", flush=True)
            records.append(run_one(name, available.get(name), out_dir, options.quick))
            print(line(records[-1]), flush=True)
    finally:
        perf.release_shared()
        write_index(out_dir, records, options.quick)
    print(f"\nresults in {out_dir}:")
    for record in records:
        print("  " + line(record))
    return 0 if all(r.status in ("ok", "missing") for r in records) else 1


if __name__ == "__main__":
    raise SystemExit(main())
