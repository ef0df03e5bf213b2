"""`migrator plan --measure-throughput`: a few seconds of one disk per datastore, through the disk engine."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable

from converters.disks.sample import OpensDisk, sample_read_rate
from core.errors import MigratorError
from core.plan import Plan, PlannedDisk, ThroughputMeasurement

log = logging.getLogger(__name__)
LOCAL = "(local files)"  # the "datastore" of VMX/OVF/OVA disks


def sample_disks(plan: Plan) -> dict[str, tuple[str, PlannedDisk]]:
    """Per datastore, the largest disk to read (the most data to sample): {datastore: (vm name, disk)}."""
    chosen: dict[str, tuple[str, PlannedDisk]] = {}
    for planned in plan.vms:
        for disk in planned.disks:
            if not disk.source_file:
                continue
            datastore = disk.datastore or LOCAL
            best = chosen.get(datastore)
            if best is None or disk.transfer_bytes > best[1].transfer_bytes:
                chosen[datastore] = (planned.source_name, disk)
    return chosen


def measure(
    plan: Plan,
    open_disk: Callable[[PlannedDisk], OpensDisk],
    seconds: float = 3.0,
    echo: Callable[[str], None] = lambda _line: None,
) -> list[ThroughputMeasurement]:
    """Measure every datastore of the plan; a disk that cannot be read is skipped with a warning line."""
    found: list[ThroughputMeasurement] = []
    for datastore, (vm_name, disk) in sorted(sample_disks(plan).items()):
        try:
            sample = sample_read_rate(open_disk(disk), seconds=seconds)
        except MigratorError as error:
            echo(f"warning: throughput of {datastore} not measured: {vm_name} / {disk.label}: {error.message}")
            continue
        if sample.bytes_read == 0 or sample.seconds <= 0:
            echo(f"warning: throughput of {datastore} not measured: {vm_name} / {disk.label} holds no data")
            continue
        log.info("throughput %s: %d bytes in %.2fs", datastore, sample.bytes_read, sample.seconds)
        found.append(
            ThroughputMeasurement(
                datastore=datastore,
                bytes_per_second=sample.bytes_per_second,
                sample_bytes=sample.bytes_read,
                seconds=round(sample.seconds, 3),
                disk=f"{vm_name} / {disk.label}",
                measured_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            )
        )
    return found
