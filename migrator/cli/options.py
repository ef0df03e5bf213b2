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
from pathlib import Path
from typing import Any

import click
from click.shell_completion import CompletionItem

from core.confine import parse_datastore_dirs
from core.errors import InputError
from migrator.sources import SourceOptions
from migrator.sources.govc import default_source

DEFAULT_PLAN_FILE = "plan.yaml"  # what `migrator plan` writes without --output-file

_CONNECTION_OPTIONS = (
    click.option(
        "--insecure",
        is_flag=True,
        help="Do not verify the vCenter's TLS certificate (explicit choice; never stored in the plan). "
        "Default: $GOVC_INSECURE.",
    ),
    click.option(
        "--thumbprint",
        metavar="T",
        help="Accept exactly this certificate (SHA-1 or SHA-256 thumbprint); a plan records the one accepted.",
    ),
    click.option(
        "--ca-file",
        metavar="PEM",
        help="Trust the CA certificates in this PEM bundle (several: separated by ':'). Default: $GOVC_TLS_CA_CERTS.",
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


def _given(name: str) -> bool:
    """Set on the command line or by a ``MIGRATOR_*`` variable (not left to its default)."""
    context = click.get_current_context(silent=True)
    source = context.get_parameter_source(name) if context is not None else None
    return source not in (None, click.core.ParameterSource.DEFAULT)


def _govc_defaults(insecure: bool, ca_file: str | None) -> tuple[bool, str | None]:
    """govc's GOVC_INSECURE and GOVC_TLS_CA_CERTS, for what neither a flag nor a MIGRATOR_* variable set."""
    if not _given("insecure") and os.environ.get("GOVC_INSECURE", "").strip().lower() in _TRUE:
        insecure = True
    if not _given("ca_file") and os.environ.get("GOVC_TLS_CA_CERTS"):
        ca_file = os.environ["GOVC_TLS_CA_CERTS"]
    return insecure, ca_file


_TRUE = ("1", "true", "t", "yes", "y", "on")


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

    A command's ``--source`` (``source`` or ``source_spec``) defaults to ``GOVC_URL`` when it has no plan
    (and is not a ``--rollback``, which reads its source from the state).
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
        insecure, ca_file = _govc_defaults(insecure, ca_file)
        options = build_source_options(
            insecure=insecure,
            thumbprint=thumbprint,
            ca_file=ca_file,
            password_file=password_file,
            datastore_dirs=datastore_dirs,
        )
        # no plan, no --source, and not a rollback (which finds its source in the state): GOVC_URL's
        if kwargs.get("plan_path") is None and not kwargs.get("do_rollback"):
            for name in ("source", "source_spec"):
                if name in kwargs and kwargs[name] is None:
                    kwargs[name] = default_source()
        return command(*args, source_options=options, **kwargs)

    for option in reversed(_CONNECTION_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


def _plan_vm_names(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Shell completion of --vm: the source and target names in the plan (--plan, else ./plan.yaml)."""
    import yaml

    path = ctx.params.get("plan_path") or DEFAULT_PLAN_FILE
    try:
        document = yaml.safe_load(Path(path).read_text())
        vms = document.get("vms") or []
    except (OSError, yaml.YAMLError, AttributeError):
        return []
    names: list[str] = []
    for vm in vms:
        if isinstance(vm, dict):
            names += [str(vm[key]) for key in ("source_name", "target_name") if vm.get(key)]
    return [CompletionItem(name) for name in dict.fromkeys(names) if name.startswith(incomplete)]


def _one_vm(ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> str | None:
    if len(value) > 1:
        raise click.BadParameter(
            f"given {len(value)} times ({', '.join(value)}): this command takes one VM per run; "
            "run it once per VM (each run is resumable)",
            param_hint="--vm",
        )
    return value[0] if value else None


def vm_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--vm NAME``, exactly once: repeating it is refused (never a VM silently dropped); completes from the plan."""
    return click.option(
        "--vm",
        "vm",
        multiple=True,
        required=True,
        metavar="NAME",
        callback=_one_vm,
        shell_complete=_plan_vm_names,
        help=help_text,
    )


_CLUSTER_OPTIONS = (
    click.option(
        "--kubeconfig",
        type=click.Path(dir_okay=False),
        help="Kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).",
    ),
    click.option("--context", "kube_context", metavar="NAME", help="Kubeconfig context (default: its current one)."),
)


def cluster_options(
    namespace_default: str | None = None, namespace_help: str = "Target namespace."
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """kubectl's ``--kubeconfig``, ``--context`` and ``-n/--namespace`` on a cluster command."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        command = click.option(
            "-n",
            "--namespace",
            default=namespace_default,
            show_default=namespace_default is not None,
            help=namespace_help,
        )(command)
        for option in reversed(_CLUSTER_OPTIONS):
            command = option(command)
        return command

    return decorate
