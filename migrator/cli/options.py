"""Options several commands share: how to reach (and trust) a source."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.shell_completion import CompletionItem

from migrator.sources import SourceOptions

DEFAULT_PLAN_FILE = "plan.yaml"  # what `migrator plan` writes without --output-file

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
