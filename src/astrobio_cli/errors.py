"""Errors a user can fix. The CLI prints them as one line and exits non-zero, no traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user asked for (bad name, bad value, missing file, network down).

    `exit_code` is 2 for usage errors (the convention of Click and Typer) and 1 otherwise.
    """

    exit_code: int = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(UserError):
    """The command line or the settings named something that does not exist or is invalid."""

    exit_code = 2


class UnknownNameError(UsageError):
    """A model, data source or attention backend name that no plugin registered."""


class PluginConflictError(UsageError):
    """Two plugins registered the same name."""


class SettingsError(UsageError):
    """A setting has a bad value."""
