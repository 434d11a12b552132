"""Known failures with the exit code and the one-line message the CLI prints for each."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Documented exit codes of every saetui command."""

    OK = 0
    ERROR = 1  # unexpected failure (a bug): rerun with SAETUI_DEBUG=1 for the traceback
    USAGE = 2  # bad arguments: unknown SAE name, invalid option value
    NOT_FOUND = 3  # a source, database, file, repo or revision that does not exist
    NETWORK = 4  # the hub could not be reached, or refused access (401/403)
    DATA = 5  # invalid data: corrupt checkpoint, empty source, incompatible database, bad SQL
    LOCKED = 6  # the database is open for writing in another process
    INTERRUPTED = 130  # Ctrl-C


class SaetuiError(Exception):
    """A failure the user can fix; printed as one line with a hint on what to do."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The message and the hint joined into the single line the CLI prints."""
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(SaetuiError):
    """The command line asked for something that does not exist or cannot be combined."""

    exit_code = ExitCode.USAGE


class NotFoundError(SaetuiError):
    """A file, folder, database, hub repo or revision is missing."""

    exit_code = ExitCode.NOT_FOUND


class NetworkError(SaetuiError):
    """The hub could not be reached or refused the request."""

    exit_code = ExitCode.NETWORK


class DataError(SaetuiError):
    """Input data is invalid: a corrupt checkpoint, an empty source, a mismatched database, bad SQL."""

    exit_code = ExitCode.DATA


class DatabaseLockedError(SaetuiError):
    """The DuckDB file is held by another process."""

    exit_code = ExitCode.LOCKED
