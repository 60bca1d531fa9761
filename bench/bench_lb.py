#!/usr/bin/env python3
"""Push and pull through the load balancer against a node's registry, side by side.

    python bench/bench_lb.py [--quick] [--out docs/perf]
    python bench/bench_lb.py --front HOST:PORT --direct HOST:PORT [--direct ...] \\
        [--ca-file CA.pem] [--user U --password-file F]      # against any running lab

Images of 1, 10, 50 and 200 MB (--quick: 1, 10, 50) of one random layer are pushed
and pulled with the registry HTTP API from the host, alternating between the front
address and a node's registry (the nodes in turn), so both see the same host load.
Each pull reads an image the other path pushed. Manifest GETs are timed the same way.
Ratios: throughput through the load balancer / straight to a registry (goal >= 0.9,
from p50 times) and manifest GET p50 through / straight (goal <= 1.2). With a CA file
and credentials it speaks HTTPS with basic auth (issue 14's registry); plain HTTP
without.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import perf
from regclient import Access, Client, TestImage

NAME = "lb"
THROUGHPUT_GOAL = 0.9  # load balancer throughput / a registry's, at least
MANIFEST_GOAL = 1.2  # manifest GET p50 through the load balancer / direct, at most
SIZES_MB = (1, 10, 50, 200)
QUICK_SIZES_MB = (1, 10, 50)
REPEATS = {1: 10, 10: 6, 50: 12, 200: 3}
QUICK_REPEATS = {1: 5, 10: 4, 50: 8}
MANIFEST_GETS, QUICK_MANIFEST_GETS = 60, 30
REPO = "bench/lb"
MB = 1_000_000


def measure_size(front: Client, directs: list[Client], size_mb: int, repeats: int) -> dict:
    """Interleaved pushes and cross pulls of ``size_mb`` MB images; seconds per path."""
    times: dict[str, dict[str, list[float]]] = {
        path: {"push": [], "pull": []} for path in ("lb", "direct")
    }
    for rep in range(repeats):
        direct = directs[rep % len(directs)]
        images = {p: TestImage.random(size_mb * MB, f"{size_mb}-{rep}-{p}") for p in times}
        tags = {p: f"{size_mb}mb-{rep}-{p}-{os.getpid()}" for p in times}
        times["lb"]["push"].append(front.push(REPO, tags["lb"], images["lb"]))
        times["direct"]["push"].append(direct.push(REPO, tags["direct"], images["direct"]))
        # Each path pulls what the other pushed: neither reads its own fresh upload.
        times["lb"]["pull"].append(front.pull(REPO, tags["direct"], images["direct"]))
        times["direct"]["pull"].append(direct.pull(REPO, tags["lb"], images["lb"]))
    result: dict = {"repeats": repeats}
    for op in ("push", "pull"):
        lb, straight = perf.summary(times["lb"][op]), perf.summary(times["direct"][op])
        result[op] = {
            "lb_seconds": lb,
            "direct_seconds": straight,
            "lb_mb_per_s": round(size_mb / lb["p50"], 1),
            "direct_mb_per_s": round(size_mb / straight["p50"], 1),
            "throughput_ratio": round(straight["p50"] / lb["p50"], 3),
        }
    return result


def measure_manifest(front: Client, directs: list[Client], gets: int) -> dict:
    image = TestImage.random(1024, "manifest")
    front.push(REPO, "manifest", image)
    lb, straight = [], []
    for index in range(gets):
        lb.append(front.manifest(REPO, "manifest"))
        straight.append(directs[index % len(directs)].manifest(REPO, "manifest"))
    lb_s, direct_s = perf.summary(lb), perf.summary(straight)
    return {"lb_seconds": lb_s, "direct_seconds": direct_s,
            "p50_ratio": round(lb_s["p50"] / direct_s["p50"], 3)}  # fmt: skip


def measure(front: str, directs: list[str], quick: bool, access: Access | None = None) -> dict:
    """Every size and the manifest GETs; each client keeps its connection open."""
    clients = [Client(front, access), *(Client(d, access) for d in directs)]
    try:
        sizes = QUICK_SIZES_MB if quick else SIZES_MB
        repeats = QUICK_REPEATS if quick else REPEATS
        by_size = {str(mb): measure_size(clients[0], clients[1:], mb, repeats[mb]) for mb in sizes}
        gets = QUICK_MANIFEST_GETS if quick else MANIFEST_GETS
        manifest = measure_manifest(clients[0], clients[1:], gets)
    finally:
        for client in clients:
            client.close()
    return {"sizes": by_size, "manifest": manifest}


def verdict(data: dict) -> tuple[str, bool]:
    at50 = data["sizes"].get("50")
    manifest = data["manifest"]["p50_ratio"]
    met = manifest <= MANIFEST_GOAL
    parts = []
    if at50:
        push, pull = at50["push"]["throughput_ratio"], at50["pull"]["throughput_ratio"]
        met = met and push >= THROUGHPUT_GOAL and pull >= THROUGHPUT_GOAL
        parts.append(f"50 MB push {push:.2f}x, pull {pull:.2f}x a registry's throughput")
    parts.append(f"manifest GET p50 {manifest:.2f}x")
    goals = f"(goals >= {THROUGHPUT_GOAL}x, <= {MANIFEST_GOAL}x)"
    return ("met: " if met else "NOT met: ") + "; ".join(parts) + f" {goals}", met


def plot(data: dict, out_dir: Path) -> Path:
    title = f"load balancer / a node's registry, side by side ({data['target']['front']})"
    fig, (ax, bx) = perf.figure(title, size=(10, 4.4), widths=(3, 1))
    sizes = list(data["sizes"])
    x = range(len(sizes))
    for offset, op, color in ((-0.18, "push", "tab:blue"), (0.18, "pull", "tab:green")):
        ratios = [data["sizes"][s][op]["throughput_ratio"] for s in sizes]
        ax.bar([i + offset for i in x], ratios, width=0.34, color=color, label=f"{op} throughput")
        for i, ratio in zip(x, ratios, strict=True):
            ax.text(i + offset, ratio, f"{ratio:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(x), [f"{s} MB" for s in sizes])
    ax.set_ylabel("through the LB / straight to a registry")
    ax.set_title("push and pull throughput ratio (p50)", fontsize=10)
    ax.set_ylim(0, 1.4)
    perf.goal_line(ax, THROUGHPUT_GOAL, f"goal >= {THROUGHPUT_GOAL}")
    manifest = data["manifest"]
    bars = ["p50", "p99"]
    values = [manifest["lb_seconds"][b] / manifest["direct_seconds"][b] for b in bars]
    bx.bar(bars, values, color="tab:purple", width=0.5)
    for i, value in enumerate(values):
        bx.text(i, value, f"{value:.2f}", ha="center", va="bottom", fontsize=8)
    bx.set_title("manifest GET time ratio", fontsize=10)
    bx.set_ylim(0, max(1.6, max(values) * 1.2))
    perf.goal_line(bx, MANIFEST_GOAL, f"p50 goal <= {MANIFEST_GOAL}")
    return perf.save_plot(fig, out_dir, NAME)


def finish(out_dir: Path, quick: bool, measured: dict, target: dict) -> dict:
    text, met = verdict(measured)
    data = perf.result(
        NAME,
        quick,
        goal={
            "throughput_ratio_at_least": THROUGHPUT_GOAL,
            "manifest_p50_ratio_at_most": MANIFEST_GOAL,
        },
        verdict=text,
        met=met,
        target=target,
        **measured,
    )
    return perf.publish(out_dir, data, plot)


def main(out_dir: Path, quick: bool = False) -> dict:
    with perf.shared_lab() as lab:
        measured = measure(lab.front(), lab.registries(), quick, lab.access())
        target = {"front": lab.front(), "direct": lab.registries(), "tls": True}
    return finish(out_dir, quick, measured, target)


def cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=perf.REPO / "docs" / "perf")
    parser.add_argument("--front", help="HOST:PORT of the load balancer (else: a lab of its own)")
    parser.add_argument("--direct", action="append", default=[], help="HOST:PORT of a registry")
    parser.add_argument("--ca-file", help="CA certificate: speak HTTPS and trust it")
    parser.add_argument("--user", help="basic auth user")
    parser.add_argument("--password-file", help="file holding the basic auth password")
    options = parser.parse_args()
    if not options.front:
        print(main(options.out, options.quick)["verdict"])
        return 0
    if not options.direct:
        parser.error("--front needs at least one --direct")
    password = Path(options.password_file).read_text().strip() if options.password_file else None
    access = Access(options.ca_file, options.user, password)
    measured = measure(options.front, options.direct, options.quick, access)
    target = {"front": options.front, "direct": options.direct, "tls": bool(options.ca_file)}
    print(finish(options.out, options.quick, measured, target)["verdict"])
    return 0


if __name__ == "__main__":
    sys.exit(cli())
