"""What the cutover pipeline needs from a source and a target: narrow protocols.

The vSphere adapter satisfies ``CutoverSource``; ``migrator.cutover.targets`` holds one
``CutoverTarget`` per kind of target (the local runtime, a Kubernetes cluster).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from core.inventory import VM, Inventory
from core.plan import Plan, PlannedVM


class CutoverSource(Protocol):
    url: str

    def vm_inventory(self, name: str) -> VM: ...

    def inventory_of(self, vm_name: str) -> Inventory:
        """One VM's inventory, for a plan made on the fly (``migrator.sources.SingleVMReader``)."""

    def power_state(self, name: str) -> str: ...

    def shutdown_guest(self, name: str, timeout: float = 300.0) -> None:
        """Guest OS shutdown, waiting up to ``timeout`` for power-off; SourceError when refused or late."""

    def power_off(self, name: str) -> None: ...

    def power_on(self, name: str) -> None: ...

    def mark_migrated(self, name: str, note: str) -> object: ...

    def annotation(self, name: str) -> str:
        """The VM's note as it is now (recorded before the cutover marks it)."""

    def unmark_migrated(self, name: str, note: str, annotation: str) -> object:
        """Undo ``mark_migrated(name, note)``: the note back to ``annotation``, as it was before."""


@dataclass(frozen=True)
class Verification:
    marker: str | None = None  # a line the guest prints on its serial console
    tcp_port: int | None = None  # a port the guest must accept connections on
    timeout: float = 300.0


@dataclass(frozen=True)
class ClusterAccess:
    """How a cluster target was reached: the kubeconfig file (None: $KUBECONFIG or ~/.kube/config) and its context.
    Recorded with the cutover, so that `cutover --rollback --vm NAME` alone reaches the same cluster. A path and a
    name only: no credential."""

    kubeconfig: str | None = None
    context: str | None = None

    @classmethod
    def given(cls, kubeconfig: str | None, context: str | None = None) -> ClusterAccess:
        """As the command line gave them, the path made absolute (a rollback may run from another directory)."""
        return cls(None if kubeconfig is None else str(Path(kubeconfig).expanduser().resolve()), context)


@dataclass(frozen=True)
class TargetStop:
    confirmed: bool  # the target is known to be stopped (or never ran)
    detail: str  # one line: what was done, e.g. "target web01 destroyed after the 30s grace period"


class CutoverTarget(Protocol):
    description: str  # e.g. "local:/srv/out" or "cluster:namespace"

    def preflight(self, plan: Plan, planned: PlannedVM) -> None:
        """Reachable, names free (or ours from an earlier run), storage available. Raise TargetError."""

    def check_verification(self, verification: Verification) -> None:
        """Refuse (TargetError), before the source is touched, a guest check this target cannot make."""

    def forget_earlier_copies(self, plan: Plan, planned: PlannedVM) -> list[str]:
        """Discard what an earlier ``convert`` copied while the source ran, so the next transfer is full."""

    def transfer(self, plan: Plan, planned: PlannedVM) -> int:
        """Final full copy of every disk; returns bytes moved. Idempotent and resumable."""

    def convert_guest(self, plan: Plan, planned: PlannedVM, *, skip: bool) -> str:
        """Convert the copied guest OS (virt-v2v) and update the VirtualMachine; returns a one-line summary.
        Raises a MigratorError with virt-v2v's reason; idempotent (a finished conversion is not redone)."""

    def start(self, plan: Plan, planned: PlannedVM, *, run: bool) -> None:
        """Write/apply the VirtualMachine and its volumes; start it when ``run``. Never starts it twice."""

    def wait_running(self, planned: PlannedVM, timeout: float) -> None:
        """Block until the instance is Running; raise TargetError on failure or timeout."""

    def verify(self, planned: PlannedVM, verification: Verification) -> None:
        """Configured guest checks (console marker, TCP port); raise TargetError when they fail."""

    def stop(self, planned: PlannedVM, grace: float) -> TargetStop:
        """Stop the target VM (rollback): a clean shutdown, destroyed after ``grace`` seconds if still running.

        Idempotent. ``confirmed`` only when the target is known not to run any more: a rollback powers
        the source back on only then, so two copies of the VM never run at once."""

    def remove(self, plan: Plan, planned: PlannedVM) -> str:
        """Delete what the cutover created on the target (a cancelled migration). Idempotent; one line."""


@runtime_checkable
class PausedStart(Protocol):
    """A target that can create the VM paused while its disks are still being written, and run it at ``start``."""

    def start_paused(self, plan: Plan, planned: PlannedVM) -> None:
        """Create and launch the VM paused (none of the guest runs, its disks are not read); ``start`` resumes it.
        Returns without waiting for the instance: its start overlaps what the caller does next."""
