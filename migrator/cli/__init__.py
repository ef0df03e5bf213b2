"""The `migrator` command line.

Commands live one per module in this package and are loaded on first use, so a
command's heavy imports (libvirt, kubernetes) never slow the others down.
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys

import click

from core.errors import MigratorError

# command name -> "module:attribute"; the list of commands is data.
COMMANDS: dict[str, str] = {
    "plan": "migrator.cli.plan:plan",
    "report": "migrator.cli.report:report",
    "convert": "migrator.cli.convert:convert",
    "cutover": "migrator.cli.cutover:cutover",
    "status": "migrator.cli.status:status",
    "runtime": "migrator.cli.runtime:runtime",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        module = importlib.import_module(module_name)
        command: click.Command = getattr(module, attribute)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="vsphere-migrator")
def cli(verbose: int) -> None:
    """Move VMware vSphere VMs onto Kubernetes, and run them there."""
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s")


def _terminate(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops as Ctrl-C does: transfers record their state and exit


def main(argv: list[str] | None = None) -> None:
    """Entry point: every user-caused failure is one line on stderr and a non-zero exit."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        cli.main(args=argv, standalone_mode=False)
    except MigratorError as error:
        click.echo(f"error: {error.message}", err=True)
        sys.exit(error.exit_code)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        click.echo(f"error: {error.format_message()}", err=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except Exception as error:  # a bug: still one line; -vv shows the traceback
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            raise
        click.echo(f"error: internal error: {type(error).__name__}: {error} (run with -vv for details)", err=True)
        sys.exit(70)
    sys.exit(0)


if __name__ == "__main__":
    main()
