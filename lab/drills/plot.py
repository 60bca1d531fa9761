"""A drill's timeline as a PNG: every pull and push at the moment it ended, green when
it succeeded and red when it failed, with the fault and the heal marked. What a class
looks at on the projector."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: files only

import matplotlib.pyplot as plt  # noqa: E402

from lab.drills.load import Outcome  # noqa: E402
from lab.drills.report import Verdict, fmt_seconds  # noqa: E402

ROWS = {"pull": 1.0, "push": 0.0}
PLURAL = {"pull": "pulls", "push": "pushes"}


def timeline(outcomes: list[Outcome], verdict: Verdict, path: Path) -> Path:
    fig, (lanes, rate) = plt.subplots(
        2, 1, figsize=(11, 4.8), sharex=True, gridspec_kw={"height_ratios": [1, 1.3]}
    )
    window = verdict.window
    for axis in (lanes, rate):
        axis.axvspan(window.fault, window.heal, color="#f6d7d7", zorder=0)
        axis.axvline(window.fault, color="#b22222", linewidth=1)
        axis.axvline(window.heal, color="#2e7d32", linewidth=1)
    for ok, color, marker in ((True, "#2e7d32", "|"), (False, "#c62828", "x")):
        shown = [o for o in outcomes if o.ok == ok]
        lanes.scatter([o.end for o in shown], [ROWS[o.kind] for o in shown], c=color,
                      marker=marker, s=40 if ok else 50, linewidths=1.2,
                      label="succeeded" if ok else "failed")  # fmt: skip
    lanes.set_yticks(list(ROWS.values()), [PLURAL[k] for k in ROWS])
    lanes.set_ylim(-0.6, 1.6)
    lanes.legend(loc="upper right", ncols=2, fontsize=8, frameon=False)
    lanes.text(window.fault, 1.45, " fault", color="#b22222", fontsize=8, va="center")
    lanes.text(window.heal, 1.45, " heal", color="#2e7d32", fontsize=8, va="center")
    _success_rate(rate, outcomes, window.end)
    n = verdict.numbers
    fig.suptitle(
        f"drill {verdict.drill}: {verdict.target}  —  failed pulls {n.failed_pulls}/{n.pulls}, "
        f"failed pushes {n.failed_pushes}/{n.pushes}, longest gap {fmt_seconds(n.longest_gap)}",
        fontsize=10,
    )
    rate.set_xlabel("seconds since the load began")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _success_rate(axis: plt.Axes, outcomes: list[Outcome], end: float, step: float = 1.0) -> None:
    """Share of requests that succeeded, per second."""
    seconds = [i * step for i in range(int(end / step) + 1)]
    for kind, color in (("pull", "#1565c0"), ("push", "#ef6c00")):
        shares = []
        for t in seconds:
            inside = [o for o in outcomes if o.kind == kind and t <= o.end < t + step]
            shares.append(100 * sum(o.ok for o in inside) / len(inside) if inside else None)
        xs = [t for t, v in zip(seconds, shares, strict=True) if v is not None]
        ys = [v for v in shares if v is not None]
        axis.plot(xs, ys, color=color, linewidth=1.4, label=f"{PLURAL[kind]} that succeeded (%)")
    axis.set_ylim(-5, 105)
    axis.set_ylabel("% per second")
    axis.legend(loc="lower right", fontsize=8, frameon=False)
