"""The instructor's view: every lab's phases, last check, memory; a table, JSON, HTML.

A phase's progress is what ``inv lab.status --json`` computes (``workflow.status_data``);
the class adds a summary per lab (done by the kit, graded by hand, failing) and memory.
"""

from __future__ import annotations

import html
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.classroom.memory import lab_memory
from lab.paths import build_dir
from lab.phases import PHASES
from lab.spec import LabSpec
from lab.state import TRAINEE, LabState
from lab.workflow import status_data

KIND_KIT, KIND_HAND, KIND_FAILING, KIND_TURN, KIND_STALE, KIND_TODO = (
    "kit", "hand", "failing", "turn", "stale", "todo")  # fmt: skip
WATCH_BOUNDS = (2.0, 300.0)  # seconds between two refreshes of --watch


def phase_kind(phase: dict[str, Any]) -> str:
    """One phase in the instructor's words: done by the kit, graded by hand, failing..."""
    if phase["status"] is None:
        return KIND_TODO
    if phase["status"] == "reset":
        return KIND_TURN
    if phase["stale"]:  # passed once, but an earlier phase was redone since
        return KIND_STALE
    if phase["status"] != "passed":
        return KIND_FAILING
    return KIND_HAND if phase["by"] == TRAINEE else KIND_KIT


@dataclass
class LabRow:
    trainee: str
    lab: str
    data: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"trainee": self.trainee, **self.data}


def lab_row(trainee: str, spec: LabSpec, with_memory: bool = True) -> LabRow:
    state = LabState.load(build_dir(spec.name))
    data = status_data(spec, state)
    phases = data["phases"]
    kinds = {name: phase_kind(phases[name]) for name in PHASES}
    attempts = [p["last_attempt"] for p in phases.values() if p["last_attempt"]]
    every = (KIND_KIT, KIND_HAND, KIND_FAILING, KIND_TURN, KIND_STALE, KIND_TODO)
    data["summary"] = {kind: sum(1 for k in kinds.values() if k == kind) for kind in every}
    data["kinds"] = kinds
    data["last_check"] = max(attempts) if attempts else None
    data["subnet"] = str(spec.network.network)
    data["memory"] = lab_memory(spec).as_dict() if with_memory else None
    return LabRow(trainee, spec.name, data)


def class_json(name: str, rows: list[LabRow]) -> dict[str, Any]:
    total = sum((r.data["memory"] or {}).get("pss_mb", 0) for r in rows)
    return {"class": name, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "order": list(PHASES), "labs": [r.as_dict() for r in rows],
            "total_pss_mb": round(total, 1)}  # fmt: skip


SYMBOL = {KIND_KIT: "kit", KIND_HAND: "graded", KIND_FAILING: "FAIL", KIND_TURN: "turn",
          KIND_STALE: "stale", KIND_TODO: "-"}  # fmt: skip
COLOUR = {KIND_KIT: "#cfe3ff", KIND_HAND: "#b9f0c0", KIND_FAILING: "#ffb3b3",
          KIND_TURN: "#fff1a8", KIND_STALE: "#e0d4f0", KIND_TODO: "#f2f2f2"}  # fmt: skip


def memory_text(row: LabRow) -> str:
    mem = row.data["memory"]
    if not mem or not mem["processes"]:
        return "not running"
    return f"{mem['pss_mb']:.0f} MB PSS / {mem['rss_mb']:.0f} MB RSS, {mem['processes']} procs"


def table_rows(rows: list[LabRow]) -> list[list[str]]:
    """[trainee, lab, each phase's word, last check, memory] per lab, for the console."""
    out = []
    for row in rows:
        kinds = row.data["kinds"]
        last = (row.data["last_check"] or "never").replace("T", " ").rstrip("Z")
        out.append([row.trainee, row.lab, *[SYMBOL[kinds[p]] for p in PHASES], last,
                    memory_text(row)])  # fmt: skip
    return out


def failing_checks(row: LabRow) -> list[str]:
    """``phase: check`` once each (a check that failed on every node is listed per node)."""
    seen: dict[str, None] = {}
    for phase in PHASES:
        for check in row.data["phases"][phase]["failed_checks"]:
            seen.setdefault(f"{phase}: {check}", None)
    return list(seen)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def render_html(name: str, rows: list[LabRow], refresh: float | None) -> str:
    """One self-contained page (no script, no external file); reloads itself while
    ``--watch`` rewrites it."""
    meta = f'<meta http-equiv="refresh" content="{int(refresh)}">' if refresh else ""
    head = "".join(f"<th>{_e(p)}</th>" for p in PHASES)
    body = []
    for row, cells in zip(rows, table_rows(rows), strict=True):
        kinds = row.data["kinds"]
        phase_cells = "".join(
            f'<td class="{kinds[p]}" title="{_e(row.data["phases"][p]["progress"])}">'
            f"{_e(SYMBOL[kinds[p]])}</td>" for p in PHASES)  # fmt: skip
        failed = "; ".join(failing_checks(row))
        body.append(f"<tr><td>{_e(row.trainee)}</td><td>{_e(row.lab)}<br><small>"
                    f"{_e(row.data['subnet'])}</small></td>{phase_cells}"
                    f'<td class="when">{_e(cells[-2])}</td><td>{_e(cells[-1])}</td>'
                    f'<td class="why">{_e(failed)}</td></tr>')  # fmt: skip
    styles = "".join(f"td.{k} {{ background: {c}; text-align: center; }}"
                     for k, c in COLOUR.items())  # fmt: skip
    legend = " ".join(f'<span class="{k}" style="background:{c};padding:.1em .5em">'
                      f"{_e(SYMBOL[k])}</span> {_e(w)}" for k, c, w in (
                          (KIND_KIT, COLOUR[KIND_KIT], "done by the kit"),
                          (KIND_HAND, COLOUR[KIND_HAND], "done by hand, graded"),
                          (KIND_FAILING, COLOUR[KIND_FAILING], "failing checks"),
                          (KIND_TURN, COLOUR[KIND_TURN], "trainee's turn (reset)"),
                          (KIND_STALE, COLOUR[KIND_STALE], "an earlier phase redone since"),
                          (KIND_TODO, COLOUR[KIND_TODO], "not done")))  # fmt: skip
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">{meta}
<title>Class {_e(name)}</title>
<style>body {{ font-family: sans-serif; margin: 1.5em; }} h1 {{ color: #1a4f8b; }}
table {{ border-collapse: collapse; }} th, td {{ border: 1px solid #bbb; padding: .3em .5em; }}
th {{ background: #1a4f8b; color: white; }} td.why {{ color: #a00; font-size: 85%; }}
td.when {{ white-space: nowrap; }}
{styles}</style></head>
<body><h1>Class {_e(name)}: {len(rows)} labs</h1>
<p>As of {stamp}. {legend}</p>
<table><tr><th>trainee</th><th>lab</th>{head}<th>last check (UTC)</th><th>memory</th>
<th>failing checks</th></tr>
{chr(10).join(body)}
</table></body></html>
"""


def write_page(path: Path, text: str) -> None:
    """Replace the page in one step: a browser reloading it never sees half a page."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
