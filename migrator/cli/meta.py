"""`migrator version` and `migrator completion bash|zsh|fish`: about the tool itself."""

from __future__ import annotations

import importlib.metadata
import platform
import sys

import click
from click.shell_completion import get_completion_class

from migrator.cli.output import render

PACKAGE = "vsphere-migrator"
SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_MIGRATOR_COMPLETE"


def version_info() -> dict[str, str]:
    versions = {"migrator": importlib.metadata.version(PACKAGE), "python": platform.python_version()}
    for name in ("pyvmomi", "kubernetes", "libvirt-python", "click"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


@click.command(
    epilog="""\b
Examples:
  migrator version
  migrator version -o json | jq -r .migrator"""
)
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Choice(["text", "json", "yaml"]),
    default="text",
    show_default=True,
    help="text: the version alone; json/yaml: with the versions of the libraries it runs on.",
)
def version(output: str) -> None:
    """Print migrator's version."""
    info = version_info()
    if output == "text":
        click.echo(f"migrator {info['migrator']}")
        return
    click.echo(render(info, output))


@click.command(
    epilog="""\b
Examples:
  source <(migrator completion bash)                     # this shell only
  migrator completion bash > /etc/bash_completion.d/migrator
  migrator completion zsh > "${fpath[1]}/_migrator"
  migrator completion fish > ~/.config/fish/completions/migrator.fish"""
)
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL: commands, options, and VM names from ./plan.yaml or --plan."""
    from migrator.cli import cli

    completer = get_completion_class(shell)
    assert completer is not None  # every name in SHELLS is one of click's
    sys.stdout.write(completer(cli, {}, "migrator", COMPLETE_VAR).source())
