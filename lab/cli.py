"""What the Invoke tasks call: load the spec, run a step, turn errors into one line.

A user sees one line per problem and exit code 2 for bad input or a missing
prerequisite, never a traceback; Ctrl-C ends with exit code 130. Heavy modules
(pydantic, the providers) are imported only when a task runs, so ``inv --list``
stays fast.
"""

from __future__ import annotations

import functools
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from invoke.exceptions import Exit

from lab.errors import LabError, UsageError

__all__ = ["LabError", "UsageError", "friendly_errors", "remainder_argv", "show_task_help"]

P = ParamSpec("P")
R = TypeVar("R")


def friendly_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn the kit's errors into their lines and exit codes."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except LabError as exc:
            raise Exit("\n".join(exc.lines()), code=exc.exit_code) from None
        except KeyboardInterrupt:
            print("\ninterrupted: the lab keeps its last checkpoint", file=sys.stderr)
            raise Exit(code=130) from None

    return wrapper


HELP_FLAGS = ("-h", "--help")


def show_task_help(task: str) -> None:
    """Print Invoke's help for ``task`` (``inv TASK --help`` where Invoke took the flag
    for the task's positional argument)."""
    tasks_dir = Path(__file__).resolve().parent.parent
    argv = [sys.executable, "-m", "invoke", "--search-root", str(tasks_dir), "--help", task]
    subprocess.run(argv, check=False)


def remainder_argv(remainder: str, argv: list[str] | None = None) -> list[str]:
    """The words after ``--`` on the command line, as they were given.

    Invoke hands a task that remainder joined into one string; the process's own argv
    still has the words apart, so a quoted argument stays one argument."""
    argv = sys.argv if argv is None else argv
    if "--" in argv:
        return argv[argv.index("--") + 1 :]
    return shlex.split(remainder)


def int_option(flag: str, value: object) -> int:
    """An option that must be a whole number: one line and exit 2 when it is not."""
    try:
        return int(str(value), 10)
    except ValueError:
        raise UsageError(f"{flag} must be a whole number, not {str(value)[:40]!r}") from None


def float_option(flag: str, value: object) -> float:
    try:
        number = float(str(value))
    except ValueError:
        raise UsageError(f"{flag} must be a number, not {str(value)[:40]!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise UsageError(f"{flag} must be a finite number")
    return number
