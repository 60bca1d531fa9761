"""What the Invoke tasks call: load the spec, run a step, turn errors into one line.

A user sees one line per problem and exit code 2 for bad input or a missing
prerequisite, never a traceback; Ctrl-C ends with exit code 130.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from invoke.exceptions import Exit

from lab.paths import DEFAULT_SPEC, build_dir
from lab.providers.base import ProviderError
from lab.render import RenderError
from lab.spec import LabSpec, SpecError, load_spec

P = ParamSpec("P")
R = TypeVar("R")


class LabError(Exception):
    """A user-facing failure: the message says what happened and what to do."""

    exit_code = 1


def friendly_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn the kit's known errors into one-line messages and exit codes."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except SpecError as exc:
            raise Exit("\n".join(exc.problems), code=2) from None
        except (ProviderError, RenderError) as exc:
            raise Exit(f"error: {exc}", code=2) from None
        except LookupError as exc:  # an unknown phase or checkpoint
            raise Exit(f"error: {exc.args[0]}", code=2) from None
        except LabError as exc:
            raise Exit(f"error: {exc}", code=exc.exit_code) from None
        except KeyboardInterrupt:
            print("\ninterrupted: the lab keeps its last checkpoint", file=sys.stderr)
            raise Exit(code=130) from None

    return wrapper


def spec_and_build(spec_file: str | None, out: str | None) -> tuple[LabSpec, Path]:
    spec = load_spec(spec_file or DEFAULT_SPEC)
    return spec, build_dir(spec.name, out)


HELP_FLAGS = ("-h", "--help")


def show_task_help(task: str) -> None:
    """Print Invoke's help for ``task`` (``inv TASK --help`` where Invoke took the flag
    for the task's positional argument)."""
    tasks_dir = Path(__file__).resolve().parent.parent
    argv = [sys.executable, "-m", "invoke", "--search-root", str(tasks_dir), "--help", task]
    subprocess.run(argv, check=False)
