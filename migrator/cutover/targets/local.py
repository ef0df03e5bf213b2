"""The local-runtime target (``cutover --output-dir DIR``): the VM boots on this machine through the launcher.

Transfer is ``migrator convert --output-dir DIR`` (the disk engine, a full copy); start writes the
VirtualMachine with its ``runStrategy`` and starts the launcher detached (``runtime.local``); the
instance's phase comes from the launcher's status, the console marker from ``console.log``.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from converters.specs import dump, vm_manifests
from core import private
from core.errors import MigratorError, TargetError
from core.plan import Plan, PlannedVM
from core.wait import wait_until
from migrator.convert import convert, guest, output
from migrator.convert import disks as disk_jobs
from migrator.convert.run import spec_options
from migrator.cutover.ports import TargetStop, Verification
from migrator.cutover.targets import DiskOrigin, allocated_bytes, forget_earlier_copies
from runtime import local
from runtime.launcher import api, contract

log = logging.getLogger(__name__)

POLL = 0.5  # seconds between looks at the launcher's status and the console log
DESTROY_WAIT = 15.0  # seconds for the launcher to exit once it destroyed the guest (or was killed)
LIBVIRT_URI = "qemu:///system"  # where the launcher's domains live (runtime.launcher.libvirtd)


class LocalTarget:
    def __init__(
        self, output_dir: Path, origin: DiskOrigin, *, accel: str = "auto", announce: Callable[[str], None] = log.info
    ) -> None:
        self.announce = announce
        self.output_dir = output_dir.expanduser().resolve()
        self.origin = origin
        self.accel = accel
        self.description = f"local:{self.output_dir}"
        self._prestarted: dict[str, subprocess.Popen[bytes]] = {}  # target name → the launcher start_paused started

    # -- paths ----------------------------------------------------------------------------
    def vm_file(self, planned: PlannedVM) -> Path:
        return self.output_dir / f"{planned.target_name}-vm.yaml"

    def console_log(self, planned: PlannedVM) -> Path:
        return local.runtime_dir() / planned.target_name / "console.log"

    def _running_from(self, planned: PlannedVM) -> str | None:
        """The VM file the launcher named ``target_name`` runs from, when one is alive."""
        state = local.runtime_dir() / planned.target_name
        if local.launcher_pid(state) is None:
            return None
        try:
            return (state / "source").read_text().strip()
        except OSError:
            return "an unknown VM file"

    # -- CutoverTarget ----------------------------------------------------------------------
    def preflight(self, plan: Plan, planned: PlannedVM) -> None:
        try:
            private.private_dir(self.output_dir)
        except OSError as error:
            raise TargetError(f"cannot create {self.output_dir}: {error.strerror or error}") from None
        if not os.access(self.output_dir, os.W_OK):
            raise TargetError(f"{self.output_dir} is not writable")
        running = self._running_from(planned)
        if running is not None:
            # The final transfer rewrites the images: a guest running on them now would be corrupted.
            raise TargetError(
                f"a VM named {planned.target_name} is already running on this machine (from {running}): "
                f"stop it first (migrator runtime stop {planned.target_name})"
            )
        images = disk_jobs.planned_transfers(planned, self.output_dir, "raw")
        needed = sum(t.disk.capacity_bytes for t in images) - allocated_bytes([t.target for t in images])
        free = shutil.disk_usage(self.output_dir).free
        if needed > free:
            raise TargetError(
                f"{self.output_dir} has {free >> 20} MiB free, the disks of {planned.source_name} "
                f"may need {needed >> 20} MiB more"
            )

    def forget_earlier_copies(self, plan: Plan, planned: PlannedVM) -> list[str]:
        return forget_earlier_copies(planned, self.output_dir)

    def transfer(self, plan: Plan, planned: PlannedVM) -> int:
        namespace = plan.target_namespace if self.origin.plan_path is None else None
        # the pipeline's convert-guest step converts the guest
        request = self.origin.convert_request(
            planned, output_dir=self.output_dir, namespace=namespace, defer_conversion=True
        )
        result = convert(request)
        images = [t.target for t in disk_jobs.planned_transfers(planned, self.output_dir, "raw")]
        return allocated_bytes(images) if result.converted else 0

    def convert_guest(self, plan: Plan, planned: PlannedVM, *, skip: bool) -> str:
        transfers = disk_jobs.planned_transfers(planned, self.output_dir, "raw")
        accelerator = self.accel if self.accel != "auto" else None
        options = guest.GuestOptions(skip=skip, progress="auto", accelerator=accelerator)
        inspection = guest.convert_vm_guest(planned, transfers, self.output_dir, options, self.announce)
        if inspection is None:
            return "skipped (--skip-conversion)"
        manifests = vm_manifests(planned, plan, spec_options(None, False, inspection))
        output.write_manifests(self.output_dir, manifests)
        return guest.summary_line(inspection)

    def start(self, plan: Plan, planned: PlannedVM, *, run: bool) -> None:
        vm_file = self.vm_file(planned)
        self._set_run_strategy(vm_file, "Always" if run else "Halted")
        if not run:
            return
        prestarted = self._prestarted.pop(planned.target_name, None)
        if prestarted is not None:
            local.wait_started(local.find_vm(vm_file), prestarted, timeout=300.0)
        running = self._running_from(planned)
        if running is not None:
            if running == str(vm_file):
                # started paused (start_paused), or by an earlier run that died before recording it: never twice
                self._resume(planned, vm_file)
                return
            raise TargetError(f"a VM named {planned.target_name} is already running from {running}")
        vm = local.find_vm(vm_file)
        log.info("local target %s: starting the launcher (accelerator %s) from %s", vm.name, self.accel, vm_file)
        process = local.start(vm, self.accel)
        local.wait_started(vm, process, timeout=300.0)

    def start_paused(self, plan: Plan, planned: PlannedVM) -> None:
        """The launcher started on the VM file with ``startStrategy: Paused``: QEMU is up, its vCPUs never ran,
        nothing read the disks (raw images, the host's page cache: what is written into them until ``start``
        is what the guest reads). ``start`` resumes it and takes the strategy out of the file again."""
        vm_file = self.vm_file(planned)
        running = self._running_from(planned)
        if running is not None:
            if running == str(vm_file):
                return  # an earlier run's, paused or resumed: `start` deals with it
            raise TargetError(f"a VM named {planned.target_name} is already running from {running}")
        self._set_run_strategy(vm_file, "Always", start_paused=True)
        vm = local.find_vm(vm_file)
        log.info("local target %s: starting the launcher paused (accelerator %s) from %s", vm.name, self.accel, vm_file)
        self._prestarted[planned.target_name] = local.start(vm, self.accel)

    def _resume(self, planned: PlannedVM, vm_file: Path) -> None:
        """Run the guest of a launcher started paused; a running one is left as it is."""
        self._set_run_strategy(vm_file, "Always")  # a later start of this VM file runs it at once

        def started() -> dict[str, Any] | None:
            status = self._status(planned)
            return status if status.get("phase") not in ("Scheduled", None) else None

        status = wait_until(started, timeout=300.0, interval=0.05)
        if status is None:
            raise TargetError(f"{planned.target_name}: the launcher did not start the guest within 300s")
        if status.get("phase") == "Paused":
            state = local.runtime_dir() / planned.target_name
            api.request(state / contract.API_SOCKET, "POST", "/unpause")

    def wait_running(self, planned: PlannedVM, timeout: float) -> None:
        phase: str | None = None

        def running() -> bool:
            nonlocal phase
            status = self._status(planned)
            phase = status.get("phase")
            if phase not in ("Running", "Scheduled", None):
                raise TargetError(f"{planned.target_name} is {phase}: {status.get('reason') or 'no reason given'}")
            return phase == "Running"

        if not wait_until(running, timeout=timeout, interval=POLL):
            raise TargetError(f"{planned.target_name} was not Running within {timeout:.0f}s (phase {phase})")

    def verify(self, planned: PlannedVM, verification: Verification) -> None:
        if verification.tcp_port is not None:
            raise TargetError(self._no_tcp_reason())
        if verification.marker:
            self._wait_for_marker(planned, verification.marker, verification.timeout)

    def stop(self, planned: PlannedVM, grace: float) -> TargetStop:
        """ACPI shutdown; after ``grace`` seconds the launcher destroys the guest; if the launcher does not
        answer or exit, it is killed (libvirt destroys the domain of a launcher that died). Confirmed only
        when the launcher is gone and libvirt runs no domain of that name."""
        name = planned.target_name
        state = local.runtime_dir() / name
        prestarted = self._prestarted.pop(name, None)
        if prestarted is not None:  # launched a moment ago (start_paused): its pid file may not be written yet
            try:
                local.wait_started(local.find_vm(self.vm_file(planned)), prestarted, timeout=300.0)
            except MigratorError as error:
                log.info("local target %s: the paused launch ended: %s", name, error.message)
        pid = local.launcher_pid(state)
        if pid is None:
            return self._confirm(name, f"target {name} was not running")
        socket_path = state / contract.API_SOCKET

        def gone() -> bool:
            return local.launcher_pid(state) != pid

        if self._status(planned).get("phase") == "Paused":
            # An ACPI shutdown resumes a paused guest first: one started paused on disks still being written (a
            # warm cutover's) must never run, and a paused one has nothing a clean shutdown would save.
            log.info("local target %s: paused (launcher pid %d): destroying it", name, pid)
            self._ask(socket_path, "destroy")
            if wait_until(gone, timeout=DESTROY_WAIT, interval=POLL):
                return self._confirm(name, f"target {name} destroyed (it was paused)")
        else:
            log.info("local target %s: ACPI shutdown (launcher pid %d), grace %.0fs", name, pid, grace)
            self._ask(socket_path, "shutdown")
            if wait_until(gone, timeout=grace, interval=POLL):
                return self._confirm(name, f"target {name} shut down ({self._outcome(state)})")
        log.info("local target %s: still running after %.0fs: destroying it", name, grace)
        self._ask(socket_path, "destroy")
        if wait_until(gone, timeout=DESTROY_WAIT, interval=POLL):
            return self._confirm(name, f"target {name} destroyed after the {grace:.0f}s grace period")
        log.warning("local target %s: the launcher (pid %d) did not exit: killing it", name, pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if wait_until(gone, timeout=DESTROY_WAIT, interval=POLL):
            return self._confirm(name, f"target {name} killed after the {grace:.0f}s grace period")
        return TargetStop(False, f"target {name} still runs: launcher pid {pid} outlived shutdown, destroy and kill")

    @staticmethod
    def _ask(socket_path: Path, action: str) -> None:
        try:
            api.request(socket_path, "POST", f"/{action}")
        except TargetError as error:  # the guest already stopping, or the launcher not answering: the wait says
            log.info("launcher %s: %s", action, error.message)

    @staticmethod
    def _outcome(state: Path) -> str:
        code = int(local.result(state).get("exit_status", 0))
        return local.EXIT_MEANINGS.get(code, f"exit status {code}")

    def _confirm(self, name: str, detail: str) -> TargetStop:
        """``detail`` once libvirt runs no domain ``name`` (it destroys a dead launcher's domain a moment later)."""
        if wait_until(lambda: not domain_active(name), timeout=DESTROY_WAIT, interval=POLL):
            return TargetStop(True, detail)
        return TargetStop(False, f"{detail}, but libvirt still runs a domain named {name}")

    def remove(self, plan: Plan, planned: PlannedVM) -> str:
        """Delete the VM's manifests, images and resume records from the output directory (after ``stop``)."""
        if self._running_from(planned) is not None:
            raise TargetError(f"{planned.target_name} is still running: it cannot be removed")
        transfers = disk_jobs.planned_transfers(planned, self.output_dir, "raw")
        forget_earlier_copies(planned, self.output_dir)
        removed = 0
        paths = [self.vm_file(planned)] + [t.target for t in transfers]
        paths += [self.output_dir / f"{t.claim}-{kind}.yaml" for t in transfers for kind in ("pvc", "dv")]
        for path in paths:
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
            except OSError as error:
                raise TargetError(f"cannot remove {path}: {error.strerror or error}") from None
        return f"target {planned.target_name} removed from {self.output_dir} ({removed} file(s))"

    def check_verification(self, verification: Verification) -> None:
        """Refuse, before anything is touched, a check this target cannot make."""
        if verification.tcp_port is not None:
            raise TargetError(self._no_tcp_reason())

    # -- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _no_tcp_reason() -> str:
        return (
            "--verify-port needs the guest's port reachable from here; the local runtime does not publish "
            "guest ports on this machine: use --verify-marker"
        )

    def _status(self, planned: PlannedVM) -> dict[str, Any]:
        try:
            return local.status(planned.target_name)
        except MigratorError as error:
            raise TargetError(f"{planned.target_name}: {error.message}") from None

    def _wait_for_marker(self, planned: PlannedVM, marker: str, timeout: float) -> None:
        log = self.console_log(planned)
        needle = marker.encode()

        def printed() -> bool:
            try:
                if needle in log.read_bytes():
                    return True
            except OSError:
                pass
            status = self._status(planned)
            if status.get("phase") not in ("Running", "Scheduled"):
                raise TargetError(
                    f"{planned.target_name} stopped before printing {marker!r}: "
                    f"{status.get('phase')} ({status.get('reason') or 'no reason given'})"
                )
            return False

        if not wait_until(printed, timeout=timeout, interval=POLL):
            raise TargetError(f"{planned.target_name} did not print {marker!r} on its console within {timeout:.0f}s")

    @staticmethod
    def _set_run_strategy(vm_file: Path, strategy: str, *, start_paused: bool = False) -> None:
        try:
            documents = list(yaml.safe_load_all(vm_file.read_text()))
        except (OSError, yaml.YAMLError) as error:
            raise TargetError(f"cannot read {vm_file}: {error}") from None
        vm = next((d for d in documents if isinstance(d, dict) and d.get("kind") == "VirtualMachine"), None)
        if vm is None:
            raise TargetError(f"{vm_file}: no VirtualMachine")
        spec = vm.setdefault("spec", {})
        instance = spec.setdefault("template", {}).setdefault("spec", {})
        paused = instance.get("startStrategy") == "Paused"
        if spec.get("runStrategy") == strategy and "running" not in spec and paused == start_paused:
            return
        spec.pop("running", None)  # KubeVirt refuses both fields at once
        spec["runStrategy"] = strategy
        if start_paused:
            instance["startStrategy"] = "Paused"  # KubeVirt's: the instance starts with its vCPUs paused
        else:
            instance.pop("startStrategy", None)
        partial = vm_file.with_name(f".{vm_file.name}.tmp")
        partial.write_text(dump(vm))
        os.replace(partial, vm_file)


def domain_active(name: str) -> bool:
    """Whether libvirt runs a domain ``name``; False when libvirt is not reachable (no daemon: no domain)."""
    import libvirt

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    try:
        conn = libvirt.openReadOnly(LIBVIRT_URI)
    except libvirt.libvirtError:
        return False
    try:
        try:
            return bool(conn.lookupByName(name).isActive())
        except libvirt.libvirtError:
            return False
    finally:
        conn.close()
