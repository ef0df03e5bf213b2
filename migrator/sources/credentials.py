"""Where a source's password comes from: a file, an environment variable, or a terminal prompt.

The password is returned to the caller and used for the login only: it is never logged,
never put in an exception message, and never stored on an object that gets serialised.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import click

from core.errors import InputError, Interrupted, SourceError
from migrator.logs import redact
from migrator.sources import SourceOptions
from migrator.sources.govc import password_for


def warn_if_shared(path: Path) -> None:
    """Warn, as ssh does for keys, when group or others may read the password file."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # reading it says why
    if mode & 0o077:
        click.echo(
            f"warning: password file {path} is open to group or others (mode {stat.S_IMODE(mode):04o}): "
            f"chmod 600 {path}",
            err=True,
        )


def read_password(options: SourceOptions, account: str) -> str:
    """The password for ``account`` (``user@host``): ``--password-file``, then the env var, then a prompt.

    An explicit file wins over the environment; the prompt is used only on an interactive terminal.
    """
    if options.password_file:
        path = Path(options.password_file)
        warn_if_shared(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise InputError(f"cannot read password file {path}: {error.strerror or type(error).__name__}") from None
        except UnicodeDecodeError:
            raise InputError(f"password file {path} is not UTF-8 text") from None
        password = text.rstrip("\r\n")
        if not password:
            raise InputError(f"password file {path} is empty")
        return redact(password)
    if options.password_env:
        from_env = os.environ.get(options.password_env)
        if from_env:
            return redact(from_env)
    user, _, host = account.rpartition("@")
    from_govc = password_for(user, host.rsplit(":", 1)[0].strip("[]"))
    if from_govc:
        return redact(from_govc)
    if options.prompt and sys.stdin.isatty():
        try:
            entered: str = click.prompt(f"Password for {account}", hide_input=True, err=True)
        except click.Abort as abort:  # Ctrl-D gave no password; Ctrl-C interrupts, as it does everywhere
            if isinstance(abort.__context__, KeyboardInterrupt):
                raise Interrupted("interrupted at the password prompt") from None
            raise SourceError(f"no password given for {account}") from None
        if entered:
            return redact(entered)
    raise SourceError(
        f"no password for {account}: set {options.password_env or 'the password variable'} or use --password-file"
    )
