#!/usr/bin/env python3
"""Benchmark: local nodes + a three-manager swarm, from nothing, with images cached.

    python bench/bench_local_up.py            # prints the times; exit 1 over the budget

Uses a lab of its own (name hrl-bench, 10.213.12.0/24) and destroys it at the end.
Measured, printed, not asserted by the test suite.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO)]

from lab.images import build_images  # noqa: E402
from lab.providers.local import LocalProvider  # noqa: E402
from lab.remote import Remote, known_hosts_file  # noqa: E402
from lab.spec import load_spec  # noqa: E402
from tests.system.local_lab import form_swarm, local_lab_data, write_lab  # noqa: E402

BUDGET_SECONDS = 30.0


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="hrl-bench-") as tmp:
        spec = load_spec(write_lab(Path(tmp), local_lab_data("hrl-bench", "10.213.12")))
        build = Path(tmp) / "build"
        provider = LocalProvider(spec, build)
        try:
            report = build_images(spec, build)  # cached after the first run
            if report.built:
                print(f"(images were not cached: built {len(report.built)} first)")
            started = time.monotonic()
            provider.up()
            nodes_up = time.monotonic() - started
            with Remote(provider.nodes(), known_hosts_file(build), printer=None) as remote:
                form_swarm(remote, provider)
            total = time.monotonic() - started
        finally:
            provider.destroy()
    print(f"nodes up:            {nodes_up:6.1f} s")
    print(f"nodes + swarm ready: {total:6.1f} s  (budget {BUDGET_SECONDS:.0f} s)")
    return 0 if total < BUDGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
