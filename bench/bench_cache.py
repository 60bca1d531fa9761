#!/usr/bin/env python3
"""Pulls with and without the registries' Redis cache, side by side.

    python bench/bench_cache.py [--quick] [--out docs/perf]

On the benchmark lab: pushes a few small images, then pulls them through every
node's registry in rounds: cache on, cache off (Redis stopped on every node), cache
on again. The registries' blob-descriptor cache saves S3 stat calls; without Redis
they log an error per miss and go to the storage. Ratio: pull time without the cache /
with it (p50). Goal line 1.0: the cache must not make pulls slower.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import perf
from regclient import Client, TestImage

NAME = "cache"
GOAL_RATIO = 1.0  # without / with: at least this
REPO = "bench/cache"
IMAGES, QUICK_IMAGES = 6, 3
ROUNDS, QUICK_ROUNDS = 6, 3


def redis(lab: perf.BenchLab, action: str) -> None:
    """``docker start|stop redis`` on every node of the benchmark lab (over `inv lab.ssh`)."""
    for index in range(1, lab.nodes + 1):
        command = ["lab.ssh", f"coreos{index}", *lab.where, "--", f"docker {action} redis"]
        subprocess.run(
            [sys.executable, "-m", "invoke", *command],
            cwd=perf.REPO,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print(f"coreos{index}: {shlex.join(['docker', action, 'redis'])}")


def pull_round(clients: list[Client], images: dict[str, TestImage]) -> list[float]:
    return [client.pull(REPO, tag, image) for client in clients for tag, image in images.items()]


def measure(lab: perf.BenchLab, quick: bool) -> dict[str, list[float]]:
    access = lab.access()
    clients = [Client(address, access) for address in lab.registries()]
    images = {f"img{i}": TestImage.random(256_000, f"cache-{i}") for i in range(IMAGES)}
    if quick:
        images = dict(list(images.items())[:QUICK_IMAGES])
    times: dict[str, list[float]] = {"with": [], "without": []}
    try:
        for tag, image in images.items():
            clients[0].push(REPO, tag, image)
        pull_round(clients, images)  # warm: every registry has seen every blob once
        rounds = QUICK_ROUNDS if quick else ROUNDS
        for _ in range(rounds):
            times["with"] += pull_round(clients, images)
        redis(lab, "stop")
        try:
            for client in clients:
                client.close()  # new connections after the registries noticed
            for _ in range(rounds):
                times["without"] += pull_round(clients, images)
        finally:
            redis(lab, "start")
    finally:
        for client in clients:
            client.close()
    return times


def plot(data: dict, out_dir: Path) -> Path:
    fig, (ax, bx) = perf.figure("pulls with and without the Redis cache", widths=(2, 1))
    for index, key in enumerate(("with", "without")):
        stats = data["seconds"][key]
        ax.bar([index - 0.18], [stats["p50"] * 1000], width=0.34, color="tab:blue",
               label="p50" if index == 0 else None)  # fmt: skip
        ax.bar([index + 0.18], [stats["p99"] * 1000], width=0.34, color="tab:cyan",
               label="p99" if index == 0 else None)  # fmt: skip
    ax.set_xticks([0, 1], ["Redis cache on", "Redis stopped"])
    ax.set_ylabel("ms per pull (manifest + 2 blobs)")
    ax.legend(fontsize=8)
    ratio = data["ratio_without_to_with"]
    bx.bar(["without / with"], [ratio], color="tab:purple", width=0.5)
    bx.text(0, ratio, f"{ratio:.2f}", ha="center", va="bottom")
    bx.set_ylim(0, max(1.5, ratio * 1.2))
    perf.goal_line(bx, GOAL_RATIO, "goal: the cache is not slower")
    return perf.save_plot(fig, out_dir, NAME)


def main(out_dir: Path, quick: bool = False) -> dict:
    with perf.shared_lab() as lab:
        times = measure(lab, quick)
    seconds = {key: perf.summary(values) for key, values in times.items()}
    ratio = round(seconds["without"]["p50"] / seconds["with"]["p50"], 3)
    data = perf.result(
        NAME,
        quick,
        goal={"without_to_with_ratio_at_least": GOAL_RATIO},
        verdict=f"a pull without the cache takes {ratio:.2f}x as long as with it (p50)",
        met=ratio >= GOAL_RATIO,
        seconds=seconds,
        ratio_without_to_with=ratio,
    )
    return perf.publish(out_dir, data, plot)


if __name__ == "__main__":
    perf.run_as_script(main)
