"""What the benchmarks share: their lab, timing `inv`, result files and plots.

Not a benchmark itself (the runner only discovers ``bench_<name>.py``). Every
benchmark writes ``<out>/<name>.json`` and ``<out>/<name>.png`` through
:func:`write_result` and :func:`save_plot`, so the shapes stay alike: a result is
``{"name", "quick", "measured_at", "host", "goal", "verdict", ...}`` and a plot
shows its goal line.

The lab: benchmarks that need a running lab ask :func:`shared_lab`. Under the
runner one lab is brought up once and destroyed at the end (:func:`keep_shared`,
:func:`release_shared`); run alone, a benchmark brings up its own and destroys it.
The lab has a name and subnet of its own (``HRL_BENCH_LAB``, ``HRL_BENCH_SUBNET``,
default ``hrl-bench`` on 10.213.20.0/24), never the user's lab.yaml lab.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # this checkout's lab package, not an installed one
BUILD = REPO / "build" / "bench"
LAB_ENV, SUBNET_ENV = "HRL_BENCH_LAB", "HRL_BENCH_SUBNET"
DEFAULT_LAB, DEFAULT_SUBNET = "hrl-bench", "10.213.20"
SUBNET_PREFIX = re.compile(r"^10\.\d{1,3}\.\d{1,3}$")


# ------------------------------------------------------------------ numbers


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between ranks; one value is every percentile."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: Sequence[float]) -> dict[str, float]:
    """p50, p99, mean and count of a sample, rounded for a JSON reader."""
    return {
        "p50": round(percentile(values, 50), 4),
        "p99": round(percentile(values, 99), 4),
        "mean": round(statistics.fmean(values), 4),
        "n": len(values),
    }


# ------------------------------------------------------------------ results


def host_info() -> dict[str, Any]:
    """What makes absolute times comparable: cores and the load when measured."""
    return {"cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]}


def result(name: str, quick: bool, goal: dict[str, Any], verdict: str, **data: Any) -> dict:
    """A benchmark's result in the shape every JSON file shares."""
    return {
        "name": name,
        "quick": quick,
        "measured_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": host_info(),
        "goal": goal,
        "verdict": verdict,
        **data,
    }


def write_result(out_dir: Path, data: dict[str, Any]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{data['name']}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path


def publish(out_dir: Path, data: dict[str, Any], plot: Callable[[dict, Path], Any]) -> dict:
    """Write a benchmark's JSON and its plot; the result is what ``main`` returns."""
    write_result(out_dir, data)
    plot(data, out_dir)
    return data


def run_as_script(main: Callable[..., dict]) -> None:
    """``python bench/bench_X.py [--quick] [--out DIR]``: one benchmark, its verdict printed."""
    argv = sys.argv
    out = Path(argv[argv.index("--out") + 1]) if "--out" in argv else REPO / "docs" / "perf"
    print(main(out, quick="--quick" in sys.argv)["verdict"])


def figure(title: str, size: tuple[float, float] = (7.5, 4.2), widths: Sequence[int] = (1,)):  # noqa: ANN201
    """A fresh figure on the non-interactive backend (no display on a lab host): (fig, ax),
    or (fig, [ax, ...]) with one axis per entry of ``widths`` (their relative widths)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(widths), figsize=size, gridspec_kw={"width_ratios": widths})
    fig.suptitle(title, fontsize=11)
    for ax in axes if len(widths) > 1 else [axes]:
        ax.grid(axis="y", alpha=0.3)
    return fig, axes


def goal_line(ax: Any, value: float, label: str, horizontal: bool = True) -> None:
    """The goal every plot shows: a dashed red line with its meaning in the legend."""
    draw = ax.axhline if horizontal else ax.axvline
    draw(value, color="tab:red", linestyle="--", linewidth=1.3, label=label)
    ax.legend(loc="best", fontsize=8)


def save_plot(fig: Any, out_dir: Path, name: str) -> Path:
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ------------------------------------------------------------------ the lab


def bench_lab_name() -> str:
    return os.environ.get(LAB_ENV, DEFAULT_LAB)


def bench_subnet(offset: int = 0) -> str:
    """The /24 prefix (``10.x.y``) of the bench lab, or of a further lab ``offset`` up."""
    prefix = os.environ.get(SUBNET_ENV, DEFAULT_SUBNET)
    if not SUBNET_PREFIX.match(prefix):
        raise SystemExit(f"{SUBNET_ENV} must look like 10.213.20 (a /24 prefix), not {prefix!r}")
    first, second, third = prefix.split(".")
    return f"{first}.{second}.{int(third) + offset}"


def lab_data(name: str, subnet: str, nodes: int = 3) -> dict[str, Any]:
    """lab.yaml's topology under another name and subnet, with ``nodes`` nodes; the four
    MinIO instances spread over the first nodes as lab.yaml spreads them over three."""
    data = yaml.safe_load((REPO / "lab.yaml").read_text())
    data["name"], data["network"] = name, {"subnet": f"{subnet}.0/24"}
    template = data["nodes"][0]
    data["nodes"] = [
        {**template, "name": f"coreos{i}", "ip": f"{subnet}.{10 + i}"} for i in range(1, nodes + 1)
    ]
    for index, instance in enumerate(data["minio"]["instances"]):
        instance["node"] = f"coreos{index % min(nodes, 3) + 1}"
    return data


@dataclass
class BenchLab:
    """A lab the benchmarks drive through `inv`, as a user would."""

    name: str
    subnet: str
    nodes: int = 3
    up_seconds: float | None = None
    phase_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def build(self) -> Path:
        return BUILD / self.name

    @property
    def spec_file(self) -> Path:
        return BUILD / f"{self.name}.yaml"

    @property
    def where(self) -> list[str]:
        return ["--spec", str(self.spec_file), "--out", str(self.build)]

    def write_spec(self) -> None:
        BUILD.mkdir(parents=True, exist_ok=True)
        data = lab_data(self.name, self.subnet, self.nodes)
        self.spec_file.write_text(yaml.safe_dump(data, sort_keys=False))

    def up(self, *extra: str) -> float:
        self.write_spec()
        self.up_seconds = inv("lab.up", "--provider", "local", *self.where, *extra)
        state = json.loads((self.build / "state.json").read_text())
        self.phase_seconds = {n: p["seconds"] for n, p in state.get("phases", {}).items()}
        return self.up_seconds

    def destroy(self) -> None:
        inv("lab.destroy", *self.where, check=False, quiet=True)

    def front(self) -> str:
        return f"{self.subnet}.11:80"

    def registries(self) -> list[str]:
        return [f"{self.subnet}.{10 + i}:5000" for i in range(1, self.nodes + 1)]

    def access(self) -> Any:
        """regclient's Access for this lab: its CA and the push account (the registries
        and the load balancer speak HTTPS and want an account by default)."""
        from regclient import Access

        from lab.secrets import PUSH_USER, ensure_secrets

        secrets = ensure_secrets(self.build)
        return Access(str(secrets.file("ca.crt")), PUSH_USER, secrets.registry.push_password)


_SHARED: dict[str, Any] = {"keep": False, "lab": None}


def keep_shared() -> None:
    """The runner's promise: the shared lab stays up between benchmarks until released."""
    _SHARED["keep"] = True


def release_shared() -> None:
    lab = _SHARED["lab"]
    _SHARED["keep"], _SHARED["lab"] = False, None
    if lab is not None:
        lab.destroy()


@contextlib.contextmanager
def shared_lab() -> Iterator[BenchLab]:
    """The benchmark lab, brought up through verify (once, under the runner)."""
    lab = _SHARED["lab"]
    if lab is None:
        lab = BenchLab(bench_lab_name(), bench_subnet())
        lab.destroy()  # whatever a killed earlier run left
        try:
            lab.up()
        except BaseException:
            lab.destroy()
            raise
        _SHARED["lab"] = lab
    try:
        yield lab
    finally:
        if not _SHARED["keep"]:
            release_shared()


def inv(*args: str, check: bool = True, quiet: bool = False) -> float:
    """Run ``inv ARGS`` from the repo (this checkout's code) and return its wall time."""
    started = time.monotonic()
    output = subprocess.DEVNULL if quiet else None
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", *args], cwd=REPO, stdout=output, stderr=output
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"inv {' '.join(args)} exited {proc.returncode}")
    return time.monotonic() - started


def inv_output(*args: str) -> tuple[float, str]:
    """``inv ARGS`` with its output captured (and echoed): (wall seconds, output)."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", *args], cwd=REPO, capture_output=True, text=True
    )
    seconds = time.monotonic() - started
    sys.stdout.write(proc.stdout[-2000:])
    if proc.returncode != 0:
        sys.stdout.write(proc.stderr[-2000:])
        raise RuntimeError(f"inv {' '.join(args)} exited {proc.returncode}")
    return seconds, proc.stdout
