"""Options several commands share: how to reach (and trust) a source, and where its files are.

Trust: TLS is verified against the system's CAs unless ``--ca-file`` (a PEM bundle) replaces
them, ``--thumbprint`` pins one certificate, or ``--insecure`` turns verification off; the last
two contradict each other and are refused together. govc's ``GOVC_INSECURE`` and
``GOVC_TLS_CA_CERTS`` supply defaults, and ``GOVC_URL`` the source when there is neither
``--source`` nor a plan; a flag on the command line wins over the environment.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from core.confine import parse_datastore_dirs
from core.errors import InputError
from migrator.sources import SourceOptions
from migrator.sources.govc import default_source

_CONNECTION_OPTIONS = (
    click.option(
        "--insecure",
        is_flag=True,
        envvar="GOVC_INSECURE",
        show_envvar=True,
        help="Do not verify the vCenter's TLS certificate (explicit choice; never stored in the plan).",
    ),
    click.option(
        "--thumbprint",
        metavar="T",
        help="Accept exactly this certificate (SHA-1 or SHA-256 thumbprint); a plan records the one accepted.",
    ),
    click.option(
        "--ca-file",
        metavar="PEM",
        envvar="GOVC_TLS_CA_CERTS",
        show_envvar=True,
        help="Trust the CA certificates in this PEM bundle (several: separated by ':').",
    ),
    click.option(
        "--password-file",
        metavar="FILE",
        type=click.Path(dir_okay=False),
        help="Read the vSphere password from FILE (else $MIGRATOR_VSPHERE_PASSWORD, else a prompt).",
    ),
    click.option(
        "--datastore-dir",
        "datastore_dirs",
        multiple=True,
        metavar="NAME=DIR",
        help="A VMX's /vmfs/volumes/NAME/... files are in local folder DIR (repeatable).",
    ),
)


def _from_command_line(name: str) -> bool:
    context = click.get_current_context(silent=True)
    if context is None:
        return True
    return context.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE


def build_source_options(
    *,
    insecure: bool,
    thumbprint: str | None,
    ca_file: str | None,
    password_file: str | None,
    datastore_dirs: tuple[str, ...] = (),
    explicit: Callable[[str], bool] = _from_command_line,
) -> SourceOptions:
    """The options, with contradictions refused and environment defaults yielding to flags."""
    if insecure and thumbprint:
        if explicit("insecure"):
            raise InputError(
                "--insecure and --thumbprint contradict each other: --insecure accepts any certificate, "
                "--thumbprint exactly one; give only one"
            )
        insecure = False  # GOVC_INSECURE yields to a pin on the command line
    if insecure and ca_file:
        if explicit("insecure") and explicit("ca_file"):
            raise InputError("--insecure and --ca-file contradict each other: give only one")
        if explicit("insecure"):
            ca_file = None
        else:
            insecure = False
    if ca_file:
        for path in ca_file.split(os.pathsep):
            if not os.path.isfile(path):
                raise InputError(f"--ca-file {path}: no such file")
    dirs = parse_datastore_dirs(datastore_dirs)
    return SourceOptions(
        insecure=insecure,
        thumbprint=thumbprint,
        ca_file=ca_file or None,
        password_file=password_file,
        prompt=sys.stdin.isatty(),
        datastore_dirs=tuple((name, str(path)) for name, path in dirs.items()),
    )


def source_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the trust and datastore options; the command receives them as ``source_options``.

    A command's ``--source`` (``source`` or ``source_spec``) defaults to ``GOVC_URL`` when it has no plan.
    """

    @functools.wraps(command)
    def wrapper(
        *args: Any,
        insecure: bool,
        thumbprint: str | None,
        ca_file: str | None,
        password_file: str | None,
        datastore_dirs: tuple[str, ...],
        **kwargs: Any,
    ) -> Any:
        options = build_source_options(
            insecure=insecure,
            thumbprint=thumbprint,
            ca_file=ca_file,
            password_file=password_file,
            datastore_dirs=datastore_dirs,
        )
        for name in ("source", "source_spec"):
            if name in kwargs and kwargs[name] is None and kwargs.get("plan_path") is None:
                kwargs[name] = default_source()
        return command(*args, source_options=options, **kwargs)

    for option in reversed(_CONNECTION_OPTIONS):
        wrapper = option(wrapper)
    return wrapper
