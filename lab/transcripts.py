"""What a phase printed the last time it ran, kept for the trainee's workbook.

``build/<lab>/transcripts/<phase>.txt`` holds the plain text of the last run of each
phase (steps, the nodes' output, checks). The kit never prints a secret, and a
transcript is scrubbed of the lab's secret values (and swarm join tokens) before it is written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

TRANSCRIPTS_DIRNAME = "transcripts"
REDACTED = "<secret>"
MAX_CHARS = 20_000  # a workbook shows the run, not a log dump
# Swarm join tokens (printed by `docker swarm init`) let any machine join the swarm.
JOIN_TOKEN_RE = re.compile(r"SWMTKN-[0-9A-Za-z-]+")


def transcripts_dir(build: Path) -> Path:
    return Path(build) / TRANSCRIPTS_DIRNAME


def scrub(text: str, secret_values: Iterable[str]) -> str:
    for value in secret_values:
        if value:
            text = text.replace(value, REDACTED)
    return JOIN_TOKEN_RE.sub(REDACTED, text)


def save(build: Path, phase: str, text: str, secret_values: Iterable[str]) -> Path:
    directory = transcripts_dir(build)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{phase}.txt"
    clean = scrub(text, secret_values)
    if len(clean) > MAX_CHARS:
        clean = clean[: MAX_CHARS // 2] + "\n[... cut ...]\n" + clean[-MAX_CHARS // 2 :]
    path.write_text(clean)
    return path


def load(build: Path, phase: str) -> str | None:
    path = transcripts_dir(build) / f"{phase}.txt"
    return path.read_text() if path.exists() else None
