"""bench/run.py and the benchmarks' pure parts: discovery, the result shape, plots.

No lab is brought up here: benchmarks are exercised with fabricated measurements.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers import REPO

BENCH = REPO / "bench"


def load_bench(name: str) -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"_test_{name}", BENCH / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run() -> ModuleType:
    return load_bench("run")


@pytest.fixture(scope="module")
def perf() -> ModuleType:
    return load_bench("perf")


FAKE = '''
"""A fake benchmark for the runner's tests."""
from pathlib import Path
import json

def main(out_dir: Path, quick: bool = False) -> dict:
    data = {"name": "fake", "goal": {"x_at_most": 1}, "verdict": f"quick={quick}"}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "fake.json").write_text(json.dumps(data))
    (out_dir / "fake.png").write_bytes(b"png")
    return data
'''


def write_fake(directory: Path, name: str, body: str) -> Path:
    path = directory / f"bench_{name}.py"
    path.write_text(body)
    return path


def test_discover_finds_only_bench_modules(run, tmp_path):
    write_fake(tmp_path, "fake", FAKE)
    (tmp_path / "perf.py").write_text("")
    (tmp_path / "run.py").write_text("")
    assert run.discover(tmp_path) == {"fake": tmp_path / "bench_fake.py"}


def test_every_benchmark_in_the_repo_has_the_agreed_main(run):
    found = run.discover()
    assert {"render", "phases", "replay", "lb", "cache", "nodes", "libvirt"} <= set(found)
    for name, path in found.items():
        assert run.interface_problem(run.load(name, path)) is None, name


def test_default_selection_skips_optional_and_lists_the_expected(run, tmp_path):
    available = {"lb": tmp_path / "a", "render": tmp_path / "b", "libvirt": tmp_path / "c"}
    chosen = run.select(available, [], optional={"libvirt"})
    assert chosen == ["render", "lb", "class"]  # ORDER, and class though absent
    assert run.select(available, ["libvirt", "lb"], optional={"libvirt"}) == ["lb", "libvirt"]


def test_an_unknown_name_is_a_usage_error(run, tmp_path):
    with pytest.raises(SystemExit, match="no benchmark nosuch"):
        run.select({"lb": tmp_path}, ["nosuch"], optional=set())


def test_a_missing_expected_benchmark_is_a_line_not_a_crash(run, tmp_path):
    record = run.run_one("class", None, tmp_path, quick=True)
    assert record.status == "missing"
    assert "issue 13" in run.line(record)


def test_a_good_benchmark_runs_and_is_checked(run, tmp_path):
    path = write_fake(tmp_path, "fake", FAKE)
    record = run.run_one("fake", path, tmp_path / "out", quick=True)
    assert (record.status, record.verdict) == ("ok", "quick=True")


def test_a_failing_benchmark_is_recorded_and_the_next_runs(run, tmp_path, capsys):
    bad = write_fake(
        tmp_path, "bad", "def main(out_dir, quick=False):\n    raise OSError('boom')\n"
    )
    assert run.run_one("bad", bad, tmp_path, quick=False).status == "failed"
    good = write_fake(tmp_path, "fake", FAKE)
    assert run.run_one("fake", good, tmp_path, quick=False).status == "ok"


def test_wrong_signature_or_missing_files_are_invalid(run, tmp_path):
    odd = write_fake(tmp_path, "odd", "def main(where):\n    return {}\n")
    assert "not (out_dir, quick=False)" in run.run_one("odd", odd, tmp_path, False).detail
    lazy = write_fake(tmp_path, "lazy", "def main(out_dir, quick=False):\n"
                      "    return {'name': 'lazy', 'goal': {}, 'verdict': 'v'}\n")  # fmt: skip
    record = run.run_one("lazy", lazy, tmp_path, False)
    assert (record.status, record.detail) == ("invalid", "it wrote no lazy.json")


def test_main_writes_the_index(run, tmp_path, monkeypatch, capsys):
    write_fake(tmp_path, "fake", FAKE)
    monkeypatch.setattr(
        run, "discover", lambda bench_dir=None: {"fake": tmp_path / "bench_fake.py"}
    )
    out = tmp_path / "perf"
    assert run.main(["--only", "fake", "--only", "class", "--quick", "--out", str(out)]) == 0
    index = json.loads((out / "index.json").read_text())
    assert index["quick"] is True
    assert [(b["name"], b["status"]) for b in index["benchmarks"]] == [
        ("class", "missing"),
        ("fake", "ok"),
    ]
    assert "class    not there" in capsys.readouterr().out


def test_a_run_of_one_benchmark_keeps_the_others_in_the_index(run, tmp_path, monkeypatch):
    write_fake(tmp_path, "fake", FAKE)
    monkeypatch.setattr(
        run, "discover", lambda bench_dir=None: {"fake": tmp_path / "bench_fake.py"}
    )
    out = tmp_path / "perf"
    assert run.main(["--only", "class", "--out", str(out)]) == 0
    assert run.main(["--only", "fake", "--quick", "--out", str(out)]) == 0
    index = json.loads((out / "index.json").read_text())
    assert [(b["name"], b["status"], b["quick"]) for b in index["benchmarks"]] == [
        ("class", "missing", False),
        ("fake", "ok", True),
    ]


def test_percentiles_and_summary(perf):
    assert perf.percentile([3.0], 99) == 3.0
    assert perf.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert perf.percentile([0.0, 10.0], 99) == pytest.approx(9.9)
    assert perf.summary([1.0, 2.0, 3.0]) == {"p50": 2.0, "p99": 2.98, "mean": 2.0, "n": 3}


def test_result_shape_and_file(perf, tmp_path):
    data = perf.result("x", True, goal={"y_at_most": 1}, verdict="ok", met=True, extra=1)
    assert {"name", "quick", "measured_at", "host", "goal", "verdict", "met", "extra"} <= set(data)
    assert data["host"]["cpus"] >= 1
    path = perf.write_result(tmp_path, data)
    assert json.loads(path.read_text())["name"] == "x"


def test_lab_data_spreads_minio_and_uses_the_subnet(perf):
    data = perf.lab_data("hrl-bench-n5", "10.213.21", nodes=5)
    assert [n["ip"] for n in data["nodes"]][-1] == "10.213.21.15"
    assert {i["node"] for i in data["minio"]["instances"]} == {"coreos1", "coreos2", "coreos3"}
    assert data["network"]["subnet"] == "10.213.21.0/24"


def test_the_bench_subnet_is_checked(perf, monkeypatch):
    monkeypatch.setenv(perf.SUBNET_ENV, "10.217.20")
    assert perf.bench_subnet(2) == "10.217.22"
    monkeypatch.setenv(perf.SUBNET_ENV, "10.217.20.0/24; rm")
    with pytest.raises(SystemExit):
        perf.bench_subnet()


def test_replay_parses_the_phase_output():
    replay = load_bench("bench_replay")
    output = "restored after-redis in 14.2 s\n...\nphase registry passed in 6.3 s\n"
    assert replay.parse(output) == (14.2, 6.3)
    runs = [{"total": t, "restore": 1.0, "phase": 1.0, "rest": 0.0} for t in (30.0, 10.0, 20.0)]
    assert replay.median_run(runs)["total"] == 20.0


def stats(p50: float) -> dict[str, float]:
    return {"p50": p50, "p99": p50 * 1.5, "mean": p50, "n": 3}


PLOTS = {
    "bench_render": {
        "seconds": {"render": stats(0.4), "validate": stats(3.0)},
    },
    "bench_phases": {"lab_up_seconds": 80.0, "phases": {"swarm": 4.0, "minio": 22.0}},
    "bench_replay": {
        "phases": {"labels": {"total": 18.0, "restore": 14.0, "phase": 1.0, "rest": 3.0}},
    },
    "bench_lb": {
        "target": {"front": "10.0.0.11:80"},
        "sizes": {
            "50": {op: {"throughput_ratio": 0.93} for op in ("push", "pull")},
        },
        "manifest": {"lb_seconds": stats(0.02), "direct_seconds": stats(0.019)},
    },
    "bench_cache": {
        "seconds": {"with": stats(0.02), "without": stats(0.03)},
        "ratio_without_to_with": 1.5,
    },
    "bench_nodes": {
        "quick": True,
        "seconds": {"3": 10.0, "5": 12.0, "7": 15.0},
        "ratio_to_3": {"3": 1.0, "5": 1.2, "7": 1.5},
    },
    "bench_libvirt": {"phases": {"swarm": 60.0}, "replays": {"labels": 61.0}},
}


@pytest.mark.parametrize("module", sorted(PLOTS))
def test_each_plot_is_written_to_a_png(module, tmp_path):
    path = load_bench(module).plot(PLOTS[module], tmp_path)
    assert path.parent == tmp_path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_unknown_benchmark_is_a_usage_error(run, capsys):
    with pytest.raises(SystemExit) as exited:
        run.main(["--only", "nosuch"])
    assert exited.value.code == 2
    assert "no benchmark nosuch" in capsys.readouterr().err
