"""``migrator runtime``: run converted VMs on this machine (local mode of the runtime)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from migrator.cli.output import Column, echo, output_options, render
from runtime import local

ACCEL = click.Choice(["auto", "kvm", "tcg"])


@click.group(
    epilog="""\b
Examples:
  migrator runtime run out/                 # boot a converted VM here, its console on stdout
  migrator runtime run --detach out/ && migrator runtime console web01
  migrator runtime install --context lab    # the in-cluster runtime"""
)
def runtime() -> None:
    """Run converted VMs on this machine through the launcher (libvirt/QEMU)."""


@runtime.command(
    epilog="""\b
Examples:
  migrator runtime run out/
  migrator runtime run --detach --accel tcg out/web01-vm.yaml"""
)
@click.argument("target", type=click.Path(path_type=Path))
@click.option("--detach", is_flag=True, help="Leave the guest running in the background once it is Running.")
@click.option("--accel", type=ACCEL, default="auto", show_default=True, help="KVM, TCG, or probe (auto).")
def run(target: Path, detach: bool, accel: str) -> None:
    """Boot TARGET (an output directory of `migrator convert`, or a VM YAML) and stream its console.

    Exits 0 when the guest powers itself off; Ctrl-C shuts it down cleanly (ACPI, grace, destroy).
    """
    vm = local.find_vm(target)

    def announce(status: dict[str, Any]) -> None:
        accel_info = status.get("accelerator") or {}
        click.echo(
            f"runtime: {vm.name} {status.get('phase', '').lower()} "
            f"(accelerator {accel_info.get('kind')}: {accel_info.get('reason')}); "
            f"console: migrator runtime console {vm.name}",
            err=True,
        )

    if detach:
        process = local.start(vm, accel)
        status = local.wait_started(vm, process)
        if status is None:
            click.echo(f"runtime: {vm.name} already stopped: guest shut down", err=True)
            return
        announce(status)
        return
    local.run(vm, sys.stdout.buffer, accel, notify=announce)


@runtime.command(
    epilog="""\b
Examples:
  migrator runtime console web01
  migrator runtime console web01 | grep -m1 'login:'"""
)
@click.argument("name")
def console(name: str) -> None:
    """Print NAME's serial console (from its first line) until the guest stops or Ctrl-C."""
    state = local.state_of(name)
    if local.launcher_pid(state) is None:
        log = state / local.CONSOLE_LOG
        if not log.exists():
            raise local.TargetError(f"{name} is not running and has no console log")
        sys.stdout.buffer.write(log.read_bytes())
        return
    try:
        local.stream_console(state, sys.stdout.buffer)
    except KeyboardInterrupt:
        return


@runtime.command(
    epilog="""\b
Examples:
  migrator runtime stop web01
  migrator runtime stop web01 --timeout 60"""
)
@click.argument("name")
@click.option("--timeout", type=float, default=None, help="Give up waiting after this many seconds.")
def stop(name: str, timeout: float | None) -> None:
    """ACPI shutdown of NAME, its grace period, then destroy."""
    code = local.stop(name, timeout, announce=lambda line: click.echo(line, err=True))
    click.echo(f"{name}: {local.exit_meaning(code)}")


LIST_COLUMNS = (
    Column("NAME", "name", no_wrap=True),
    Column("PHASE", "phase"),
    Column("ACCELERATOR", "accelerator_kind", wide_only=True),
    Column("STARTED", "started_at", wide_only=True),
    Column("PID", "pid", wide_only=True),
    Column("REASON", "reason"),
)


def _row(entry: dict[str, Any]) -> dict[str, Any]:
    return {**entry, "accelerator_kind": (entry.get("accelerator") or {}).get("kind")}


@runtime.command(
    "list",
    epilog="""\b
Examples:
  migrator runtime list
  migrator runtime list -o wide           # with accelerator, start time and launcher pid
  migrator runtime list -o name | xargs -n1 migrator runtime stop""",
)
@output_options()
@click.option("--json", "as_json", is_flag=True, hidden=True, help="Same as -o json.")
def list_(output: str, no_headers: bool, as_json: bool) -> None:
    """The VMs this machine ran, and their phase."""
    entries = local.list_vms()
    fmt = "json" if as_json else output
    rows = [_row(e) for e in entries]
    names = [str(e.get("name", "")) for e in entries]
    echo(render(entries, fmt, rows=rows, columns=LIST_COLUMNS, no_headers=no_headers, names=names))


@runtime.command(
    epilog="""\b
Examples:
  migrator runtime status web01             # the launcher's view, as JSON
  migrator runtime status web01 -o table"""
)
@click.argument("name")
@output_options(default="json")
def status(name: str, output: str, no_headers: bool) -> None:
    """NAME's status as the launcher reports it."""
    entry = local.status(name)
    echo(render(entry, output, rows=[_row(entry)], columns=LIST_COLUMNS, no_headers=no_headers, names=[name]))


from migrator.cli import runtime_cluster  # noqa: E402 (in-cluster commands: install, uninstall, vm ...)

runtime_cluster.register(runtime)
