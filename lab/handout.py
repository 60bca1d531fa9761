"""`inv lab.handout`: the trainee's workbook, from lab.yaml, the phases and the last run.

Per phase: the tutorial section it follows, why (EXPLAIN), the commands a trainee
types, what done looks like (the checks as commands), where the kit differs from the
tutorial and why, the phase's progress and the real output of its last run
(build/<lab>/transcripts/). A topology figure drawn from lab.yaml heads it. The HTML
is one self-contained file: the figure is an embedded PNG, the style inline.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

from lab.paths import access_sheet_file
from lab.phases import PHASES
from lab.phases.context import PhaseContext
from lab.spec import LabSpec
from lab.state import LabState
from lab.trainee import PhaseGuide, guide, where
from lab.transcripts import load as load_transcript

FORMATS = ("md", "html")
FIGURE_NAME = "topology.png"


@dataclass(frozen=True)
class PhasePage:
    guide: PhaseGuide
    progress: str
    transcript: str | None


@dataclass(frozen=True)
class Workbook:
    lab: str
    provider: str
    lb_kind: str
    pages: list[PhasePage]
    access: str | None = None  # a class trainee's access sheet (inv class.up writes it)


def workbook(ctx: PhaseContext, state: LabState, progress_of) -> Workbook:  # noqa: ANN001
    """``progress_of(record)`` words a phase's progress (workflow.phase_progress)."""
    pages = [
        PhasePage(
            guide(name, ctx), progress_of(state.phases.get(name)), load_transcript(ctx.build, name)
        )  # fmt: skip
        for name in PHASES
    ]
    sheet = access_sheet_file(ctx.build)
    access = sheet.read_text() if sheet.exists() else None
    return Workbook(ctx.spec.name, state.provider or "not up", ctx.lb_kind, pages, access)


# ------------------------------------------------------------------ figure


def node_roles(spec: LabSpec, lb_kind: str) -> dict[str, list[str]]:
    """What runs on each node, from lab.yaml."""
    roles: dict[str, list[str]] = {n.name: ["swarm manager"] for n in spec.nodes}
    for inst in spec.minio.instances:
        roles[inst.node].append(f"{inst.name} :{inst.port}")
    for node in spec.nodes:
        roles[node.name] += [f"registry :{spec.registry.port}", f"redis :{spec.redis.port}"]
    roles[spec.lb_node.name].append(f"{lb_kind} (LB) :{spec.loadbalancer.port}")
    return roles


def topology_png(spec: LabSpec, lb_kind: str) -> bytes:
    """Nodes with their addresses and services, the host below, the LB's arrows."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render to memory
    from matplotlib import pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    roles = node_roles(spec, lb_kind)
    count = len(spec.nodes)
    fig, ax = plt.subplots(figsize=(3.2 * count + 0.6, 4.8), dpi=100)
    ax.set_xlim(0, 3.2 * count + 0.6)
    ax.set_ylim(0, 4.8)
    ax.axis("off")
    centers: dict[str, float] = {}
    for i, node in enumerate(spec.nodes):
        x = 0.3 + 3.2 * i
        centers[node.name] = x + 1.4
        is_lb = node.name == spec.lb_node.name
        fill = "#fff4e0" if is_lb else "#e8f0fe"
        ax.add_patch(FancyBboxPatch((x, 1.9), 2.8, 2.5, boxstyle="round,pad=0.05",
                                    fc=fill, ec="#1a4f8b"))  # fmt: skip
        ax.text(x + 1.4, 4.15, f"{node.name}  {node.ip}", ha="center", weight="bold", size=11)
        for j, role in enumerate(roles[node.name]):
            ax.text(x + 0.15, 3.75 - 0.33 * j, role, size=9.5, family="monospace")
    host_w = 3.2 * count
    ax.add_patch(FancyBboxPatch((0.3, 0.2), host_w - 0.4, 1.1, boxstyle="round,pad=0.05",
                                fc="#eeeeee", ec="#555555"))  # fmt: skip
    ax.text(0.3 + (host_w - 0.4) / 2, 0.95,
            f"host {spec.network.host} on {spec.network.subnet}: image mirror :"
            f"{spec.mirror_port}, shared {spec.nfs.mount} (NFS)",
            ha="center", size=10)  # fmt: skip
    ax.text(0.3 + (host_w - 0.4) / 2, 0.5,
            f"swarm network {spec.swarm.network} {spec.swarm.subnet}; "
            f"bucket {spec.bucket.name} in MinIO ({spec.minio.stack})",
            ha="center", size=10)  # fmt: skip
    lb = centers[spec.lb_node.name]
    for name, x in centers.items():
        if name != spec.lb_node.name:
            ax.annotate("", xy=(x, 1.95), xytext=(lb, 1.95),
                        arrowprops={"arrowstyle": "->", "color": "#c06000",
                                    "connectionstyle": "arc3,rad=0.3"})  # fmt: skip
    ax.set_title(f"lab {spec.name}: {lb_kind} on {spec.lb_node.name} in front of "
                 f"{count} registries", size=12)  # fmt: skip
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


# ---------------------------------------------------------------- markdown


def _md_commands(g: PhaseGuide) -> list[str]:
    if not g.commands:
        return [f"The kit does this phase: `inv phase {g.name} --dry-run` shows its commands.", ""]
    lines = []
    for cmd in g.commands:
        mark = " *(read only: do not type it now)*" if not cmd.run else ""
        lines += [f"- {cmd.why}{mark}", "", "  ```sh", f"  {where(cmd.node)}$ {cmd.command}",
                  "  ```"]  # fmt: skip
    return lines + [""]


def render_markdown(book: Workbook) -> str:
    lines = [
        f"# Workbook: lab {book.lab}",
        "",
        'Following the tutorial "Using CoreOS, Minio (S3) to build a highly available '
        'private Docker registry - part 2", one phase at a time.',
        "",
        f"Provider: {book.provider}; load balancer: {book.lb_kind}.",
        "",
        f"![topology]({FIGURE_NAME})",
        "",
        "For every phase: `inv phase NAME --reset` puts the lab just before it, "
        "`inv lab.ssh NODE` logs you in, `inv phase NAME --check` grades your work, "
        "`inv phase NAME` shows the kit's solution.",
        "",
    ]
    if book.access:  # its own headings one level down, under the workbook's
        lines += ["## Your access", ""]
        lines += [("##" + line) if line.startswith("#") else line
                  for line in book.access.splitlines()]  # fmt: skip
        lines.append("")
    for page in book.pages:
        g = page.guide
        lines += [f"## Phase {g.name}: {g.title}", "", f"Tutorial: {g.tutorial}", "",
                  f"Progress: {page.progress}", "", "### Why", "", g.explain, "",
                  "### You type", "", *_md_commands(g), "### Done looks like", ""]  # fmt: skip
        lines += [f"- {d.what}: `{d.command}` (on {where(d.node)})" for d in g.done]
        lines += ["", "### Where the kit differs from the tutorial", ""]
        lines += [f"- {d}" for d in g.differences] or ["- (nothing)"]
        lines += ["", "### Output of the last run", ""]
        if page.transcript:
            lines += ["```text", page.transcript.rstrip(), "```"]
        else:
            lines += [f"(not run yet: `inv lab.up` or `inv phase {g.name}` records it)"]
        lines.append("")
    return "\n".join(lines)


# -------------------------------------------------------------------- html

STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
h1 { color: #1a4f8b; } h2 { border-bottom: 2px solid #1a4f8b; margin-top: 2em; }
pre { background: #f4f4f4; padding: .6em; overflow-x: auto; font-size: 90%; }
pre.run { background: #111; color: #ddd; max-height: 28em; }
.progress { display: inline-block; padding: .2em .6em; background: #e8f0fe; }
.why { color: #444; } .readonly { color: #a00; }
img { max-width: 100%; border: 1px solid #ccc; }
"""


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _html_page(page: PhasePage) -> str:
    g = page.guide
    parts = [f'<section id="phase-{_e(g.name)}" class="phase">',
             f"<h2>Phase {_e(g.name)}: {_e(g.title)}</h2>",
             f"<p><b>Tutorial:</b> {_e(g.tutorial)}</p>",
             f'<p class="progress">{_e(page.progress)}</p>',
             f"<h3>Why</h3><p>{_e(g.explain)}</p>", "<h3>You type</h3>"]  # fmt: skip
    if not g.commands:
        parts.append(f"<p>The kit does this phase: <code>inv phase {_e(g.name)} --dry-run</code>"
                     " shows its commands.</p>")  # fmt: skip
    for cmd in g.commands:
        ro = ' <span class="readonly">(read only: do not type it now)</span>' if not cmd.run else ""
        parts.append(f'<p class="why">{_e(cmd.why)}{ro}</p>'
                     f"<pre>{_e(where(cmd.node))}$ {_e(cmd.command)}</pre>")  # fmt: skip
    parts.append("<h3>Done looks like</h3><ul>")
    parts += [f"<li>{_e(d.what)}: <code>{_e(where(d.node))}$ {_e(d.command)}</code></li>"
              for d in g.done]  # fmt: skip
    parts.append("</ul><h3>Where the kit differs from the tutorial</h3><ul>")
    parts += [f"<li>{_e(d)}</li>" for d in g.differences] or ["<li>(nothing)</li>"]
    parts.append("</ul><h3>Output of the last run</h3>")
    if page.transcript:
        parts.append(f'<pre class="run">{_e(page.transcript.rstrip())}</pre>')
    else:
        parts.append(f"<p>(not run yet: <code>inv lab.up</code> or "
                     f"<code>inv phase {_e(g.name)}</code> records it)</p>")  # fmt: skip
    parts.append("</section>")
    return "\n".join(parts)


def _html_access(book: Workbook) -> str:
    if not book.access:
        return ""
    return f'<section id="access"><h2>Your access</h2><pre>{_e(book.access)}</pre></section>\n'


def render_html(book: Workbook, figure: bytes) -> str:
    image = base64.b64encode(figure).decode()
    toc = "".join(f'<li><a href="#phase-{_e(p.guide.name)}">{_e(p.guide.name)}</a>: '
                  f"{_e(p.progress)}</li>" for p in book.pages)  # fmt: skip
    body = "\n".join(_html_page(p) for p in book.pages)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Workbook: lab {_e(book.lab)}</title><style>{STYLE}</style></head>
<body>
<h1>Workbook: lab {_e(book.lab)}</h1>
<p>Following the tutorial "Using CoreOS, Minio (S3) to build a highly available private
Docker registry - part 2", one phase at a time. Provider: {_e(book.provider)};
load balancer: {_e(book.lb_kind)}.</p>
<p><code>inv phase NAME --reset</code> puts the lab just before a phase,
<code>inv lab.ssh NODE</code> logs you in, <code>inv phase NAME --check</code> grades your
work, <code>inv phase NAME</code> shows the kit's solution.</p>
{_html_access(book)}<img alt="topology of lab {_e(book.lab)}" src="data:image/png;base64,{image}">
<ol>{toc}</ol>
{body}
</body></html>
"""


def write_handout(book: Workbook, spec: LabSpec, lb_kind: str, fmt: str, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    figure = topology_png(spec, lb_kind)
    if fmt == "html":
        path = out / "handout.html"
        path.write_text(render_html(book, figure))
        return path
    (out / FIGURE_NAME).write_bytes(figure)
    path = out / "handout.md"
    path.write_text(render_markdown(book))
    return path
