"""Pure: what changed on the live source since the plan was made."""

from __future__ import annotations

from core.inventory import VM


def plan_drift(planned: VM, live: VM) -> list[str]:
    """Differences that make the plan stale (disks, NICs, firmware, CPU, memory), one sentence each."""
    changes: list[str] = []
    planned_disks = {d.label: d for d in planned.disks}
    live_disks = {d.label: d for d in live.disks}
    for label in sorted(planned_disks.keys() - live_disks.keys()):
        changes.append(f"disk {label!r} is gone")
    for label in sorted(live_disks.keys() - planned_disks.keys()):
        changes.append(f"disk {label!r} was added")
    for label in sorted(planned_disks.keys() & live_disks.keys()):
        before, after = planned_disks[label], live_disks[label]
        if before.capacity_bytes != after.capacity_bytes:
            changes.append(f"disk {label!r} capacity changed {before.capacity_bytes} -> {after.capacity_bytes}")
        if before.backing_file != after.backing_file:
            changes.append(f"disk {label!r} now backed by {after.backing_file!r}")
    planned_nics = {n.label: n for n in planned.nics}
    live_nics = {n.label: n for n in live.nics}
    for label in sorted(planned_nics.keys() ^ live_nics.keys()):
        changes.append(f"NIC {label!r} was {'removed' if label in planned_nics else 'added'}")
    for label in sorted(planned_nics.keys() & live_nics.keys()):
        before_nic, after_nic = planned_nics[label], live_nics[label]
        if (before_nic.mac or "").lower() != (after_nic.mac or "").lower():
            changes.append(f"NIC {label!r} MAC changed {before_nic.mac} -> {after_nic.mac}")
        if before_nic.network != after_nic.network:
            changes.append(f"NIC {label!r} moved to network {after_nic.network!r}")
    if planned.firmware != live.firmware:
        changes.append(f"firmware changed {planned.firmware.value} -> {live.firmware.value}")
    if planned.cpu.vcpus != live.cpu.vcpus or planned.cpu.cores_per_socket != live.cpu.cores_per_socket:
        changes.append("CPU topology changed")
    if planned.memory_mib != live.memory_mib:
        changes.append(f"memory changed {planned.memory_mib} -> {live.memory_mib} MiB")
    return changes
