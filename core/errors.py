"""Errors a user sees as one line.

Anything the user can cause or fix (bad input, unreachable host, wrong password, a
corrupt disk) is raised as a ``MigratorError`` subclass; the CLI prints ``error: <message>``
and exits with ``exit_code``. Anything else is a bug and still gets one line (see cli.main).
"""

from __future__ import annotations


class MigratorError(Exception):
    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputError(MigratorError):
    """Malformed or unreadable input: a file, a URL, a flag value."""


class SourceError(MigratorError):
    """The source could not be read: unreachable, bad credentials, certificate mismatch."""


class NotFoundError(MigratorError):
    """A named VM, file or object does not exist."""


class DiskError(MigratorError):
    """A disk could not be read, transferred, converted or verified."""


class TargetError(MigratorError):
    """The target (local directory, cluster, runtime) refused or failed."""


class BlockedError(MigratorError):
    """A VM has Critical concerns and --force did not name them."""

    exit_code = 3


class UnreachableError(MigratorError):
    """A host (vCenter, datastore, Kubernetes API server) could not be reached, or failed for now: retry later."""

    exit_code = 5


class SourceUnreachableError(UnreachableError, SourceError):
    """The source (vCenter, ESXi, a datastore) did not answer: exit 5, "try again later"."""


class Interrupted(MigratorError):
    """Ctrl-C or SIGTERM stopped the work where it was; what was done is recorded, a re-run resumes.

    Not a failure: a cutover interrupted this way is recorded as interrupted and never rolled back."""

    exit_code = 130
