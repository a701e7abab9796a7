"""Every error the library raises on purpose.

The CLI maps these to one clear line and an exit code; anything else is a bug and
keeps its traceback. Foreign exceptions (requests, SQLAlchemy, pandas) are translated
into these where they enter our code, so callers never need to import a driver to
catch a failure.

    TrackerError
    ├── ConfigError            config.toml or environment is wrong (all problems at once)
    ├── InputError             a user-supplied file, flag or value is wrong
    │   ├── ImportValidationError   rows of an import file failed validation
    │   └── NotFoundError           an unknown company, series or alert
    ├── StoreError             the database could not be opened, migrated or written
    ├── LockHeldError          another run holds the run lock
    ├── SourceError            a data source failed for one company or as a whole
    │   ├── RetriableSourceError   429, 5xx, timeouts: worth trying again later
    │   └── FatalSourceError       401/403/404, unparseable payloads: retrying will not help
    ├── NotifyError            a notifier (webhook, email) could not deliver; the alerts
    │                          stay unnotified and are sent again by the next run
    └── WriteError             a file (report, chart, export, rejects) could not be written;
                               the old file is intact (see tracker.output)
"""

from __future__ import annotations

from pathlib import Path


class TrackerError(Exception):
    """Base of every error the tracker raises deliberately; its message is user-facing."""

    exit_code: int = 3


class ConfigError(TrackerError):
    """The configuration is invalid; the message lists every problem found."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or [message]
        super().__init__(message)


class InputError(TrackerError):
    """A user mistake in a file, a flag or a value: fixable without touching code."""


class ImportValidationError(InputError):
    """Rows of an import file failed validation; nothing from that file was written."""

    def __init__(self, path: str, problems: list[str], total: int) -> None:
        self.path = path
        self.problems = problems
        self.total = total
        shown = "\n  ".join(problems)
        more = f"\n  ... and {total - len(problems)} more" if total > len(problems) else ""
        super().__init__(
            f"{path}: {total} bad row(s); nothing from this file was written "
            f"(use --skip-bad to import the good rows):\n  {shown}{more}"
        )


class NotFoundError(InputError):
    """An identifier given by the user names nothing in the store."""


class StoreError(TrackerError):
    """The database could not be reached, migrated or written."""


class LockHeldError(TrackerError):
    """Another process holds the run lock, so this run did not start."""


class SourceError(TrackerError):
    """A source failed; ``company`` is set when the failure concerns one company only."""

    retriable: bool = False

    def __init__(self, message: str, company: str | None = None) -> None:
        self.company = company
        super().__init__(message)


class RetriableSourceError(SourceError):
    """A transient failure (rate limit, server error, timeout)."""

    retriable = True


class FatalSourceError(SourceError):
    """A permanent failure for this request (auth, not found, unparseable payload)."""


class NotifyError(TrackerError):
    """A notifier could not deliver a message; the message never names a secret."""


class WriteError(TrackerError):
    """A file could not be written; the old file, if there was one, is unchanged."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cannot write {path}: {reason}")
