"""The `migrator` command line.

Commands live one per module in this package and are loaded on first use, so a
command's heavy imports (libvirt, kubernetes) never slow the others down.
"""

from __future__ import annotations

import importlib
import logging
import re
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
    "migrate": "migrator.cli.migrate:migrate_command",
    "cancel": "migrator.cli.cancel:cancel",
    "status": "migrator.cli.status:status",
    "runtime": "migrator.cli.runtime:runtime",
    "version": "migrator.cli.meta:version",
    "completion": "migrator.cli.meta:completion",
}
# MIGRATOR_<COMMAND>_<OPTION> gives any option its default, e.g. MIGRATOR_CUTOVER_VERIFY_TIMEOUT=600
ENV_PREFIX = "MIGRATOR"
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


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


@click.group(
    cls=LazyGroup,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": ENV_PREFIX},
    epilog="""\b
Examples:
  migrator plan --source vsphere://admin@vcenter.example.com/DC1 --network 'VM Network=pod'
  migrator convert --vm web01 --plan plan.yaml --output-dir out/
  migrator cutover --vm web01 --plan plan.yaml --output-dir out/ --rollback-on-failure
  migrator status -o wide
  source <(migrator completion bash)

\b
Every option also takes its default from MIGRATOR_<COMMAND>_<OPTION>
(e.g. MIGRATOR_CUTOVER_VERIFY_TIMEOUT=600). Exit status: 0 done, 2 bad input,
3 blocked by Critical concerns, 4 cutover failed or rolled back, 5 unreachable or
temporary (retry), 70 internal error, 130 interrupted.""",
)
@click.option("-v", "--verbose", count=True, help="More log output: -v steps and decisions, -vv debug.")
@click.version_option(package_name="vsphere-migrator")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """Move VMware vSphere VMs onto Kubernetes, and run them there."""
    from migrator import logs

    logs.setup(verbose)
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


def _terminate(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops as Ctrl-C does: transfers record their state and exit


def main(argv: list[str] | None = None) -> None:
    """Entry point: every user-caused failure is one line on stderr and a non-zero exit."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        cli.main(args=argv, standalone_mode=False, auto_envvar_prefix=ENV_PREFIX)
    except MigratorError as error:
        click.echo(f"error: {_one_line(error.message)}", err=True)
        sys.exit(error.exit_code)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as error:
        click.echo(f"error: {_one_line(error.format_message())}", err=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as error:  # a bug: still one line; -vv shows the traceback
        unreachable = _unreachable(error)
        if unreachable is not None:
            click.echo(f"error: {unreachable.message}", err=True)
            sys.exit(unreachable.exit_code)
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            raise
        click.echo(
            f"error: internal error: {type(error).__name__}: {_one_line(str(error))} (run with -vv for details)",
            err=True,
        )
        sys.exit(EXIT_INTERNAL)
    sys.exit(0)


def _one_line(message: str) -> str:
    """Click words some errors over several lines (a choice's \"Choose from:\" list): one line, as every error is."""
    return re.sub(r"\s*\n\s*", " ", message.strip())


def _unreachable(error: Exception) -> MigratorError | None:
    """A connection failure that escaped an adapter (urllib3 after its retries): one line, exit 5."""
    import urllib3.exceptions

    if not isinstance(error, urllib3.exceptions.MaxRetryError):
        return None
    from migrator import kube

    where = f"{error.pool.scheme}://{error.pool.host}:{error.pool.port}" if error.pool is not None else "a server"
    reason = kube.describe(error.reason) if error.reason is not None else str(error)
    return kube.ClusterUnreachableError(f"cannot reach {where}: {reason}")


if __name__ == "__main__":
    main()
