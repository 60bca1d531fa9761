"""The errors a user sees: one line each (or one per problem), never a traceback.

Every error the kit raises on purpose is a :class:`LabError`; its ``exit_code``
is what the task exits with (2 for bad input, a missing prerequisite or an
unknown name; 1 for a lab that did not do what was asked). ``cli.friendly_errors``
prints :meth:`LabError.lines` and exits; nothing else needs catching.
"""

from __future__ import annotations

USAGE = 2  # bad input, a missing tool, an unknown name: fix the command or the machine
FAILED = 1  # the lab did not do what was asked (a phase or a check failed)


class LabError(Exception):
    """A user-facing failure: the message says what happened and what to do."""

    exit_code = FAILED

    def __init__(self, message: str = "", exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    def lines(self) -> list[str]:
        return [f"error: {self}"]


class UsageError(LabError):
    """The command asked for something that does not exist or cannot work as given."""

    exit_code = USAGE


class UnknownName(UsageError, LookupError):
    """No phase, checkpoint, node or provider of that name."""


class ProviderError(LabError):
    """The host or a provider cannot do what was asked; the message names the fix."""

    exit_code = USAGE
