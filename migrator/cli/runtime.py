"""``migrator runtime``: run converted VMs on this machine (local mode of the runtime)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from runtime import local

ACCEL = click.Choice(["auto", "kvm", "tcg"])


@click.group()
def runtime() -> None:
    """Run converted VMs on this machine through the launcher (libvirt/QEMU)."""


@runtime.command()
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


@runtime.command()
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


@runtime.command()
@click.argument("name")
@click.option("--timeout", type=float, default=None, help="Give up waiting after this many seconds.")
def stop(name: str, timeout: float | None) -> None:
    """ACPI shutdown of NAME, its grace period, then destroy."""
    code = local.stop(name, timeout)
    click.echo(f"{name}: {local.exit_meaning(code)}")


@runtime.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_(as_json: bool) -> None:
    """The VMs this machine ran, and their phase."""
    entries = local.list_vms()
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    click.echo(f"{'NAME':<32} {'PHASE':<10} REASON")
    for entry in entries:
        click.echo(f"{entry.get('name', ''):<32} {entry.get('phase', ''):<10} {entry.get('reason', '')}")


@runtime.command()
@click.argument("name")
def status(name: str) -> None:
    """NAME's status as the launcher reports it (JSON)."""
    click.echo(json.dumps(local.status(name), indent=2))


from migrator.cli import runtime_cluster  # noqa: E402 (in-cluster commands: install, uninstall, vm ...)

runtime_cluster.register(runtime)
