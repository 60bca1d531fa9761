"""Failure drills on the local provider: one lab for the module, brought up as a user
would (`inv lab.up --provider local`), drilled with `inv lab.drill`, destroyed at the
end even when a test fails. Each drill's promises and "nothing lost" are asserted
from the JSON it writes; its picture must exist.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import run_inv
from tests.system.local_lab import local_lab_data

LAB_NAME = "hrl-drills"
SUBNET = "10.213.43"
DRILL_SECONDS = "12"


@pytest.fixture(scope="module")
def drill_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("drills")
    spec_file = root / "lab.yaml"
    spec_file.write_text(yaml.safe_dump(local_lab_data(LAB_NAME, SUBNET), sort_keys=False))
    out = root / "build"
    try:
        up = run_inv("lab.up", "--provider", "local", "--spec", str(spec_file), "--out", str(out),
                     timeout=1500)  # fmt: skip
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-2000:]
        yield spec_file, out
    finally:
        done = run_inv("lab.destroy", "--spec", str(spec_file), "--out", str(out),
                       "--provider", "local")  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]


def _drill(lab: tuple[Path, Path], name: str, *args: str) -> tuple[subprocess.CompletedProcess[str],
                                                                   dict[str, Any]]:  # fmt: skip
    spec_file, out = lab
    report = out / f"{name}-report.json"
    result = run_inv("lab.drill", name, "--seconds", DRILL_SECONDS, "--json", str(report),
                     "--spec", str(spec_file), "--out", str(out), *args, timeout=900)  # fmt: skip
    assert report.exists(), result.stdout[-3000:] + result.stderr[-2000:]
    (verdict,) = json.loads(report.read_text())
    return result, verdict


def _assert_kept(result: subprocess.CompletedProcess[str], verdict: dict[str, Any]) -> None:
    broken = [p["promise"] for p in verdict["promises"] if not p["kept"]]
    assert broken == [], f"{broken}\n{result.stdout[-3000:]}"
    assert result.returncode == 0, result.stderr[-2000:]
    assert verdict["numbers"]["lost"] == []


def test_one_registry_down_costs_at_most_one_percent_of_pulls(drill_lab) -> None:
    result, verdict = _drill(drill_lab, "registry")
    _assert_kept(result, verdict)
    assert "at most 1% of pulls fail" in [p["promise"] for p in verdict["promises"]]
    numbers = verdict["numbers"]
    assert numbers["pulls"] > 100 and numbers["pushes"] > 20  # the load really ran
    assert (drill_lab[1] / "drills" / "registry.png").stat().st_size > 20_000


def test_a_node_powered_off_keeps_quorum_and_the_registry_serving(drill_lab) -> None:
    result, verdict = _drill(drill_lab, "node")
    _assert_kept(result, verdict)
    assert verdict["target"] == "power off coreos3"
    assert verdict["numbers"]["recovery_after_fault"] <= 15


def test_the_single_load_balancer_is_reported_as_the_lesson_not_a_crash(drill_lab) -> None:
    result, verdict = _drill(drill_lab, "lb")
    _assert_kept(result, verdict)  # nothing promised but that nothing is lost
    assert verdict["numbers"]["failed_pull_share"] > 0.2  # the front door really was down
    assert "single point of failure" in " ".join(verdict["lessons"])
    assert "lesson: The load balancer runs only on coreos1" in result.stdout
