"""The guest-conversion stage of `convert` and `cutover`: planned VM + copied images → converters.guest.

Decides what converters.guest cannot know: the accelerator (runtime.accel's probe), VIRTIO_WIN,
each NIC's VMware name (from its PCI slot), the root choice (the plan's, else ``first``). Writes
``DIR/.migrator/inspection-<vm>.json`` and shows virt-v2v's phases (a line per phase on a
terminal, JSON events with ``--progress json``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from converters.guest import (
    ConversionRequest,
    GuestDisk,
    GuestEvent,
    GuestNic,
    Inspection,
    convert_guest,
    vmware_interface_name,
)
from converters.guest import forget as forget_conversion
from converters.guest.model import Accelerator
from core.plan import NetworkTarget, PlannedVM
from migrator.convert.disks import STATE_DIR, PlannedTransfer
from migrator.planning.rules.windows_virtio_drivers import RULE as WINDOWS_RULE
from migrator.planning.rules.windows_virtio_drivers import is_windows

Echo = Callable[[str], None]
VIRTIO_WIN_ENV = "VIRTIO_WIN"
# The default of --skip-conversion (convert and cutover): "1" for guests known to be virtio-ready (the test suite
# sets it for its tiny busybox guest, which has no OS for virt-v2v to inspect).
SKIP_ENV = "MIGRATOR_SKIP_CONVERSION"


def skip_by_default() -> bool:
    return os.environ.get(SKIP_ENV, "").lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class GuestOptions:
    skip: bool = False  # --skip-conversion: the guest is known to be virtio-ready
    virtio_win: str | None = None  # default: $VIRTIO_WIN
    progress: str = "auto"  # auto | json | none
    accelerator: str | None = None  # kvm | tcg; None: runtime.accel's probe


def satisfied_concerns(options: GuestOptions) -> tuple[str, ...]:
    """Critical concerns the conversion itself settles: virtio-win given now, or --skip-conversion chosen."""
    virtio_win = options.virtio_win if options.virtio_win is not None else os.environ.get(VIRTIO_WIN_ENV)
    return (WINDOWS_RULE.id,) if options.skip or virtio_win else ()


def inspection_path(out_dir: Path, vm: str) -> Path:
    return out_dir / STATE_DIR / f"inspection-{vm}.json"


def read_inspection(out_dir: Path, vm: str) -> Inspection | None:
    try:
        return Inspection.from_dict(json.loads(inspection_path(out_dir, vm).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _accelerator(options: GuestOptions) -> Accelerator:
    if options.accelerator in ("kvm", "tcg"):
        return options.accelerator  # type: ignore[return-value]
    from runtime.accel import probe_accelerator

    return probe_accelerator().kind


def source_buses(planned: PlannedVM) -> list[str]:
    """The bus each planned disk hung on at the source (scsi, sata, ide, nvme), in the plan's disk order."""
    by_label = {d.label: d for d in planned.vm.disks}
    buses = []
    for disk in planned.disks:
        source = by_label.get(disk.label)
        buses.append(source.controller.kind.value if source is not None else "scsi")
    return buses


def guest_nics(planned: PlannedVM) -> list[GuestNic]:
    """The NICs the target keeps, with the name the guest gave each on VMware (from its PCI slot)."""
    source_nics = {n.label: n for n in planned.vm.nics}
    nics = []
    for planned_nic in planned.nics:
        nic = source_nics.get(planned_nic.label)
        if nic is None or not nic.mac or planned_nic.target is NetworkTarget.IGNORE:
            continue
        nics.append(
            GuestNic(
                mac=nic.mac.lower(),
                source_model=nic.model,
                old_name=vmware_interface_name(nic.pci_slot),
                network=nic.network,
            )
        )
    return nics


def conversion_request(
    planned: PlannedVM, transfers: list[PlannedTransfer], out_dir: Path, options: GuestOptions
) -> ConversionRequest:
    buses = dict(zip((d.label for d in planned.disks), source_buses(planned), strict=True))
    disks = [
        GuestDisk(path=t.target, format=t.target_format, source_bus=buses.get(t.disk.label, "scsi")) for t in transfers
    ]
    virtio_win = options.virtio_win if options.virtio_win is not None else os.environ.get(VIRTIO_WIN_ENV) or None
    return ConversionRequest(
        name=planned.target_name,
        disks=tuple(disks),
        nics=tuple(guest_nics(planned)),
        memory_mib=planned.vm.memory_mib,
        vcpus=planned.vm.cpu.vcpus,
        firmware=planned.vm.firmware.value,
        root=planned.guest_root or "first",
        windows=is_windows(planned.vm),
        virtio_win=virtio_win,
        accelerator=_accelerator(options),
        state_dir=out_dir / STATE_DIR,
    )


def _reporter(progress: str, echo: Echo) -> Callable[[GuestEvent], None]:
    mode = "lines" if progress == "auto" else progress  # a line per phase, on a terminal or in a log
    started = time.monotonic()

    def report(event: GuestEvent) -> None:
        if mode == "none":
            return
        if mode == "json":
            sys.stdout.write(json.dumps(event.to_dict()) + "\n")
            sys.stdout.flush()
            return
        echo(f"convert-guest {event.vm}: [{time.monotonic() - started:6.1f}s] {event.phase}")

    return report


def convert_vm_guest(
    planned: PlannedVM,
    transfers: list[PlannedTransfer],
    out_dir: Path,
    options: GuestOptions,
    echo: Echo,
    *,
    copied_again: bool = False,
) -> Inspection | None:
    """Convert the guest on the copied images (None with --skip-conversion); record the inspection."""
    if options.skip:
        echo(f"convert-guest {planned.target_name}: skipped (--skip-conversion): the guest must be virtio-ready")
        inspection_path(out_dir, planned.target_name).unlink(missing_ok=True)
        return None
    request = conversion_request(planned, transfers, out_dir, options)
    if copied_again:
        forget_conversion(request)  # the images were rewritten from the source: convert them again
    inspection = convert_guest(request, _reporter(options.progress, echo))
    path = write_inspection(out_dir, inspection)
    report_inspection(planned.target_name, inspection, echo)
    echo(f"wrote {path}")
    return inspection


def write_inspection(out_dir: Path, inspection: Inspection) -> Path:
    """``DIR/.migrator/inspection-<vm>.json``, written whole or not at all."""
    path = inspection_path(out_dir, inspection.vm)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(json.dumps(inspection.to_dict(), indent=2, sort_keys=True) + "\n")
    os.replace(partial, path)
    return path


def report_inspection(vm: str, inspection: Inspection, echo: Echo) -> None:
    echo(f"convert-guest {vm}: {inspection.summary()}")
    for pin in inspection.nic_pins:
        echo(f"convert-guest {vm}: NIC {pin.mac} keeps its name {pin.name} ({pin.method})")
    for warning in inspection.warnings:
        echo(f"convert-guest {vm}: warning: {warning}")


def summary_line(inspection: Inspection) -> str:
    """One line for cutover's step record: what the guest is and what it now drives."""
    pins = ", ".join(f"{p.name}={p.mac}" for p in inspection.nic_pins)
    return f"{inspection.summary()}" + (f"; NIC names kept: {pins}" if pins else "")
