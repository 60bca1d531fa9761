"""The trainee's workbook, rendered from a fake lab state and transcripts, and the
HTML opened in headless Chromium (Debian `chromium`, installed by setup.sh)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from lab.handout import render_markdown, topology_png, workbook, write_handout
from lab.nodes import Capabilities
from lab.phases import PHASES
from lab.phases.context import PhaseContext
from lab.render import render
from lab.spec import parse_spec
from lab.state import KIT, TRAINEE, LabState, PhaseRecord
from lab.transcripts import REDACTED, save
from lab.workflow import phase_progress, status_data

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync")  # fmt: skip


@pytest.fixture(scope="module")
def ctx(default_lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> PhaseContext:
    spec = parse_spec(default_lab)
    caps = Capabilities(ipvs=False, systemd=False, esp=False)
    result = render(spec, tmp_path_factory.mktemp("handout") / "build", caps)
    ctx = PhaseContext(spec, result.build, caps, result.secrets, "haproxy")
    state = LabState(provider="local")
    state.phases["swarm"] = PhaseRecord(
        "passed", 4.7, "after-swarm", by=KIT, at="2026-11-30T10:00:00Z"
    )
    state.phases["minio"] = PhaseRecord("passed", 2.1, None, by=TRAINEE, at="2026-11-30T10:05:00Z")
    state.phases["bucket"] = PhaseRecord(
        "failed", 0.4, None, by=TRAINEE, at="2026-11-30T10:06:00Z",
        failed_checks=["an anonymous write is refused"],
    )  # fmt: skip
    state.save(ctx.build)
    leaked = f"key {ctx.secrets.minio_secret_key}; docker swarm join --token SWMTKN-1-abc-def x"
    save(
        ctx.build,
        "swarm",
        "> initialise the swarm on coreos1\n" + leaked,
        [ctx.secrets.minio_secret_key],
    )
    return ctx


def test_transcripts_never_keep_a_secret(ctx: PhaseContext) -> None:
    text = (ctx.build / "transcripts" / "swarm.txt").read_text()
    assert ctx.secrets.minio_secret_key not in text and "SWMTKN" not in text
    assert text.count(REDACTED) == 2


def test_markdown_has_every_phase_with_its_parts(ctx: PhaseContext) -> None:
    book = workbook(ctx, LabState.load(ctx.build), phase_progress)
    text = render_markdown(book)
    for name in PHASES:
        assert f"## Phase {name}:" in text
    for part in ("### Why", "### You type", "### Done looks like", "### Where the kit differs"):
        assert text.count(part) == len(PHASES)
    assert "> initialise the swarm on coreos1" in text  # the last run's real output
    assert "Progress: done by hand, graded" in text and "Progress: done by the kit" in text
    assert "no IPsec ESP" in text  # said plainly where encryption is off
    for secret in (ctx.secrets.minio_access_key, ctx.secrets.minio_secret_key,
                   ctx.secrets.registry_http_secret):  # fmt: skip
        assert secret not in text
    assert render_markdown(book) == text, "deterministic"


def test_status_json_words_each_phase(ctx: PhaseContext) -> None:
    data = status_data(ctx.spec, LabState.load(ctx.build))
    assert data["order"] == list(PHASES)
    phases = data["phases"]
    assert phases["swarm"]["progress"] == "done by the kit"
    assert phases["minio"]["progress"] == "done by hand, graded"
    assert phases["bucket"]["progress"] == "failed by hand: 1 check(s)"
    assert phases["bucket"]["failed_checks"] == ["an anonymous write is refused"]
    assert phases["bucket"]["last_attempt"] == "2026-11-30T10:06:00Z"
    assert phases["redis"] == {**phases["redis"], "progress": "not done", "status": None}


def test_the_topology_figure_is_a_png_drawn_from_lab_yaml(ctx: PhaseContext) -> None:
    png = topology_png(ctx.spec, "haproxy")
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_the_html_workbook_renders_in_headless_chromium(ctx: PhaseContext, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: run ./setup.sh (apt-get install chromium)"
    book = workbook(ctx, LabState.load(ctx.build), phase_progress)
    page = write_handout(book, ctx.spec, "haproxy", "html", tmp_path / "out")
    html = page.read_text()
    assert 'src="data:image/png;base64,' in html and "http://" not in html.split("<body>")[0]
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        flags = [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        taken = subprocess.run(
            [chromium, *flags, f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri()],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert shot.exists(), taken.stderr[-2000:]
        dom = subprocess.run(
            [chromium, *flags, "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=120,
        ).stdout  # fmt: skip
    for name in PHASES:
        assert f'id="phase-{name}"' in dom, name
    from PIL import Image

    with Image.open(shot) as image:
        colours = image.convert("L").getextrema()
        assert image.size == (1280, 2000)
        assert colours[1] - colours[0] > 100, "the screenshot is blank"
        assert len(image.convert("L").getcolors(maxcolors=1_000_000) or []) > 50


def test_a_class_trainees_access_sheet_heads_the_workbook(ctx: PhaseContext) -> None:
    from lab.handout import render_html
    from lab.paths import access_sheet_file

    sheet = "# Your lab: cls-1\n\n## Start\n\n```sh\nssh -J x\n```\n"
    access_sheet_file(ctx.build).write_text(sheet)
    try:
        book = workbook(ctx, LabState.load(ctx.build), phase_progress)
        markdown = render_markdown(book)
        assert "## Your access\n\n### Your lab: cls-1" in markdown and "#### Start" in markdown
        assert markdown.index("## Your access") < markdown.index("## Phase swarm")
        assert '<section id="access"><h2>Your access</h2><pre># Your lab: cls-1' in render_html(
            book, b"png")
    finally:
        access_sheet_file(ctx.build).unlink()
