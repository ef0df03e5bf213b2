"""The local-runtime target (``cutover --output-dir DIR``): the VM boots on this machine through the launcher.

Transfer is ``migrator convert --output-dir DIR`` (the disk engine, a full copy); start writes the
VirtualMachine with its ``runStrategy`` and starts the launcher detached (``runtime.local``); the
instance's phase comes from the launcher's status, the console marker from ``console.log``.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from converters.specs import dump
from core import private
from core.errors import MigratorError, TargetError
from core.plan import Plan, PlannedVM
from migrator.convert import ConvertRequest, convert
from migrator.convert import disks as disk_jobs
from migrator.cutover.ports import Verification
from migrator.cutover.targets import DiskOrigin, allocated_bytes, forget_earlier_copies
from runtime import local

POLL = 0.5  # seconds between looks at the launcher's status and the console log
STOP_TIMEOUT = 180.0


class LocalTarget:
    def __init__(self, output_dir: Path, origin: DiskOrigin, *, accel: str = "auto") -> None:
        self.output_dir = output_dir.expanduser().resolve()
        self.origin = origin
        self.accel = accel
        self.description = f"local:{self.output_dir}"

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
        request = ConvertRequest(
            vm=planned.source_name,
            plan_path=self.origin.plan_path,
            source=self.origin.source,
            source_options=self.origin.source_options,
            output_dir=self.output_dir,
            namespace=plan.target_namespace if self.origin.plan_path is None else None,
            force=self.origin.force,
            progress="none",
            verify=True,  # the data matters most here: re-read every image from storage
        )
        result = convert(request)
        images = [t.target for t in disk_jobs.planned_transfers(planned, self.output_dir, "raw")]
        return allocated_bytes(images) if result.converted else 0

    def start(self, plan: Plan, planned: PlannedVM, *, run: bool) -> None:
        vm_file = self.vm_file(planned)
        self._set_run_strategy(vm_file, "Always" if run else "Halted")
        if not run:
            return
        running = self._running_from(planned)
        if running is not None:
            if running == str(vm_file):
                return  # started by an earlier run that died before recording it: never twice
            raise TargetError(f"a VM named {planned.target_name} is already running from {running}")
        vm = local.find_vm(vm_file)
        process = local.start(vm, self.accel)
        local.wait_started(vm, process, timeout=300.0)

    def wait_running(self, planned: PlannedVM, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            status = self._status(planned)
            phase = status.get("phase")
            if phase == "Running":
                return
            if phase not in ("Scheduled", None):
                raise TargetError(f"{planned.target_name} is {phase}: {status.get('reason') or 'no reason given'}")
            if time.monotonic() >= deadline:
                raise TargetError(f"{planned.target_name} was not Running within {timeout:.0f}s (phase {phase})")
            time.sleep(POLL)

    def verify(self, planned: PlannedVM, verification: Verification) -> None:
        if verification.tcp_port is not None:
            raise TargetError(self._no_tcp_reason())
        if verification.marker:
            self._wait_for_marker(planned, verification.marker, verification.timeout)

    def stop(self, planned: PlannedVM) -> str:
        state = local.runtime_dir() / planned.target_name
        if local.launcher_pid(state) is None:
            return f"target {planned.target_name} was not running"
        code = local.stop(planned.target_name, STOP_TIMEOUT)
        return f"target {planned.target_name} stopped ({local.EXIT_MEANINGS.get(code, f'exit status {code}')})"

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
        deadline = time.monotonic() + timeout
        needle = marker.encode()
        while True:
            try:
                if needle in log.read_bytes():
                    return
            except OSError:
                pass
            status = self._status(planned)
            if status.get("phase") not in ("Running", "Scheduled"):
                raise TargetError(
                    f"{planned.target_name} stopped before printing {marker!r}: "
                    f"{status.get('phase')} ({status.get('reason') or 'no reason given'})"
                )
            if time.monotonic() >= deadline:
                raise TargetError(
                    f"{planned.target_name} did not print {marker!r} on its console within {timeout:.0f}s"
                )
            time.sleep(POLL)

    @staticmethod
    def _set_run_strategy(vm_file: Path, strategy: str) -> None:
        try:
            documents = list(yaml.safe_load_all(vm_file.read_text()))
        except (OSError, yaml.YAMLError) as error:
            raise TargetError(f"cannot read {vm_file}: {error}") from None
        vm = next((d for d in documents if isinstance(d, dict) and d.get("kind") == "VirtualMachine"), None)
        if vm is None:
            raise TargetError(f"{vm_file}: no VirtualMachine")
        spec = vm.setdefault("spec", {})
        if spec.get("runStrategy") == strategy and "running" not in spec:
            return
        spec.pop("running", None)  # KubeVirt refuses both fields at once
        spec["runStrategy"] = strategy
        partial = vm_file.with_name(f".{vm_file.name}.tmp")
        partial.write_text(dump(vm))
        os.replace(partial, vm_file)
