"""Options several commands share: how to reach (and trust) a source."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from migrator.sources import SourceOptions

_CONNECTION_OPTIONS = (
    click.option("--insecure", is_flag=True, help="Do not verify the vCenter's TLS certificate (explicit choice)."),
    click.option("--thumbprint", metavar="T", help="Accept exactly this certificate (SHA-1 or SHA-256 thumbprint)."),
    click.option(
        "--password-file",
        metavar="FILE",
        type=click.Path(dir_okay=False),
        help="Read the vSphere password from FILE (else $MIGRATOR_VSPHERE_PASSWORD, else a prompt).",
    ),
)


def source_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add --insecure/--thumbprint/--password-file; the command receives them as ``source_options``."""

    @functools.wraps(command)
    def wrapper(*args: Any, insecure: bool, thumbprint: str | None, password_file: str | None, **kwargs: Any) -> Any:
        options = SourceOptions(
            insecure=insecure, thumbprint=thumbprint, password_file=password_file, prompt=sys.stdin.isatty()
        )
        return command(*args, source_options=options, **kwargs)

    for option in reversed(_CONNECTION_OPTIONS):
        wrapper = option(wrapper)
    return wrapper
