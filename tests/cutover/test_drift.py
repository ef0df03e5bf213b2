"""Plan drift: what changed on the live source since the plan."""

from __future__ import annotations

import copy

from core.inventory import VM, Controller, ControllerKind, Cpu, Disk, Firmware, Nic
from migrator.cutover.drift import plan_drift


def _vm() -> VM:
    scsi = Controller(ControllerKind.SCSI, 0, "pvscsi")
    return VM(
        name="web01",
        source="vsphere",
        cpu=Cpu(sockets=2, cores_per_socket=2),
        memory_mib=4096,
        disks=[Disk("Hard disk 1", 10 * 2**30, scsi, 0, backing_file="[ds1] web01/web01.vmdk")],
        nics=[Nic("Network adapter 1", "vmxnet3", "00:50:56:aa:bb:cc", "VM Network")],
    )


def test_an_unchanged_vm_has_no_drift() -> None:
    assert plan_drift(_vm(), _vm()) == []


def test_power_state_and_guest_facts_are_not_drift() -> None:
    live = _vm()
    live.ip_addresses = ["10.0.0.5"]
    live.tools_status = "toolsNotRunning"
    assert plan_drift(_vm(), live) == []


def test_disk_nic_firmware_cpu_memory_changes_are_each_reported() -> None:
    live = copy.deepcopy(_vm())
    live.disks[0].capacity_bytes *= 2
    live.disks.append(Disk("Hard disk 2", 2**30, live.disks[0].controller, 1))
    live.nics[0].mac = "00:50:56:00:00:01"
    live.nics[0].network = "Other"
    live.firmware = Firmware.EFI
    live.cpu = Cpu(sockets=4, cores_per_socket=1)
    live.memory_mib = 8192
    changes = plan_drift(_vm(), live)
    text = "\n".join(changes)
    assert "Hard disk 1" in text and "capacity" in text
    assert "'Hard disk 2' was added" in text
    assert "MAC changed" in text and "moved to network 'Other'" in text
    assert "firmware changed bios -> efi" in text
    assert "CPU topology changed" in text
    assert "memory changed 4096 -> 8192 MiB" in text
    assert len(changes) == 7


def test_mac_case_is_not_a_change() -> None:
    live = _vm()
    live.nics[0].mac = "00:50:56:AA:BB:CC"
    assert plan_drift(_vm(), live) == []
