"""`migrator cancel --vm NAME`: stop one VM's migration in a running `migrator migrate`, and roll it back.

The request is recorded in the state directory; the `migrate` run that moves the VM stops it
at its next safe point (before a step, or at the next chunk of its transfer), rolls it back
(the target stopped and removed, the source powered back on if it was on) and goes on with
the others. `migrator status --vm NAME` shows when it is done.
"""

from __future__ import annotations

from pathlib import Path

import click

from core.errors import InputError
from migrator.cutover.state import StateStore
from migrator.migrate import cancel as requests


@click.command("cancel")
@click.option("--vm", "vms", required=True, multiple=True, metavar="NAME", help="The VM to cancel (repeatable).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), help="Migration state directory.")
def cancel(vms: tuple[str, ...], state_dir: Path | None) -> None:
    """Cancel the migration of a VM that `migrator migrate` is moving (or has yet to start)."""
    store = StateStore(state_dir)
    try:
        for vm in dict.fromkeys(vms):
            record = store.get(vm)
            if record is not None and record.status == "completed":
                raise InputError(
                    f"the migration of {vm} is completed: roll it back with `migrator cutover --rollback --vm {vm}`"
                )
            if record is not None and record.status == "rolled_back":
                raise InputError(f"the migration of {vm} is already rolled back")
            requests.request(store.state_dir, vm)
            where = f"in step {record.current_step}" if record is not None else "not started yet"
            click.echo(f"cancel of {vm} requested ({where}): `migrator migrate` rolls it back at its next safe point")
    finally:
        store.close()
