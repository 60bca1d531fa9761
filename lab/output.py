"""The kit's console: rich on a terminal; wide plain lines in a log (CI, `| tee`), so a
table never breaks a file name mid-word at 80 columns."""

from __future__ import annotations

from rich.console import Console

LOG_WIDTH = 200


def make_console(**options: object) -> Console:
    width = None if Console().is_terminal else LOG_WIDTH
    return Console(highlight=False, width=width, **options)  # type: ignore[arg-type]
