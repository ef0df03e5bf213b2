"""The simulator's changed-block tracking, seen by a stock pyvmomi client as vCenter answers it.

Answers are checked against what was really written into the disk's file between snapshots.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pyVmomi import vim

from core.errors import SourceError
from migrator import simulator
from migrator.simulator import seed
from migrator.sources.vsphere.operations import wait_for_task
from tests.warm.cbt_env import BLOCK, attach, datastore_path, enable_cbt, flat_vmdk, guest_writes, sparse_raw

MiB = 1 << 20
VM = "DC0_H0_VM0"


@pytest.fixture(scope="module")
def sim() -> Iterator[simulator.Simulator]:
    s = simulator.start(vms_per_pool=1, cbt_page_bytes=4 * MiB)  # small pages: the client must page
    try:
        yield s
    finally:
        s.stop()


def _snapshot(vm: vim.VirtualMachine, name: str) -> vim.vm.Snapshot:
    return wait_for_task(vm.CreateSnapshot_Task(name=name, memory=False, quiesce=False), name)


def _disk(config: vim.vm.ConfigInfo) -> vim.vm.device.VirtualDisk:
    return next(d for d in config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk))


def _areas(
    vm: vim.VirtualMachine, snap: vim.vm.Snapshot, key: int, change_id: str, capacity: int
) -> list[tuple[int, int]]:
    areas: list[tuple[int, int]] = []
    offset, calls = 0, 0
    while offset < capacity:
        info = vm.QueryChangedDiskAreas(snapshot=snap, deviceKey=key, startOffset=offset, changeId=change_id)
        assert isinstance(info, vim.VirtualMachine.DiskChangeInfo) and info.startOffset == offset and info.length > 0
        areas.extend((a.start, a.length) for a in info.changedArea or [])
        offset = info.startOffset + info.length
        calls += 1
    assert calls == -(-capacity // (4 * MiB))
    return areas


def test_changed_areas_are_what_was_written(sim: simulator.Simulator, tmp_path: Path) -> None:
    size = 32 * MiB
    raw = sparse_raw(tmp_path / "d.raw", size, [(0, b"\x01" * MiB), (20 * MiB, b"\x02" * (3 * MiB // 2))])
    backing = attach(sim, VM, flat_vmdk(raw, tmp_path / "vmdk", "cbtprobe"))
    flat = datastore_path(sim, backing.replace(".vmdk", "-flat.vmdk"))
    with seed.session(sim) as source:
        vm = source.find_vm(VM)
        key = _disk(vm.config).key
        assert not vm.config.changeTrackingEnabled
        with pytest.raises(vim.fault.FileFault):  # not tracked yet
            vm.QueryChangedDiskAreas(deviceKey=key, startOffset=0, changeId="*")

    enable_cbt(sim, VM)
    with seed.session(sim) as source:
        vm = source.find_vm(VM)
        assert vm.config.changeTrackingEnabled is True
        extra = {o.key: o.value for o in vm.config.extraConfig}
        assert extra["ctkEnabled"] == "TRUE" and extra["scsi0:0.ctkEnabled"] == "TRUE"
        assert not _disk(vm.config).backing.changeId  # tracking starts at the next stun/unstun (a snapshot)

        first = _snapshot(vm, "one")
        first_id = _disk(first.config).backing.changeId
        assert first_id and _disk(vm.config).backing.changeId == first_id
        assert _areas(vm, first, key, "*", size) == [(0, MiB), (20 * MiB, 3 * MiB // 2)]

        written = guest_writes(flat, 5, 4096, seed_value=1, region=(2 * MiB, 30 * MiB))
        second = _snapshot(vm, "two")
        second_id = _disk(second.config).backing.changeId
        assert second_id != first_id and _disk(first.config).backing.changeId == first_id
        assert _areas(vm, second, key, first_id, size) == [(o, BLOCK) for o in written]
        assert _areas(vm, second, key, second_id, size) == []  # nothing changed since itself

        wait_for_task(first.RemoveSnapshot_Task(removeChildren=False), "remove")
        assert _areas(vm, second, key, first_id, size) == [(o, BLOCK) for o in written]  # the id outlives its snapshot
        assert [n.name for n in vm.snapshot.rootSnapshotList] == ["two"]

        with pytest.raises(vim.fault.FileFault):
            vm.QueryChangedDiskAreas(snapshot=second, deviceKey=key, startOffset=0, changeId="52 00/9")
        quiesced = vm.CreateSnapshot_Task(name="q", memory=False, quiesce=True)
        with pytest.raises(SourceError):
            wait_for_task(quiesced, "quiesce")
        assert isinstance(quiesced.info.error, vim.fault.ToolsUnavailable)  # quiescing needs VMware Tools

        # CBT turned off and on again: the old change ids are rejected (a reset)
        for on in (False, True):
            wait_for_task(vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(changeTrackingEnabled=on)), "toggle")
        third = _snapshot(vm, "three")
        with pytest.raises(vim.fault.FileFault):
            vm.QueryChangedDiskAreas(snapshot=third, deviceKey=key, startOffset=0, changeId=second_id)
        wait_for_task(vm.RemoveAllSnapshots_Task(), "remove all")
        assert source.vm_inventory(VM).snapshots == []  # (vcsim's Fetch of an unset property panics: not vm.snapshot)


def test_block_maps_follow_the_descriptor_extents(sim: simulator.Simulator, tmp_path: Path) -> None:
    """Blocks across an extent boundary (FLAT then ZERO) and past a short extent file's end read as the disk does."""
    vm_name, size = "DC0_C0_RP0_VM0", 4 * MiB
    first = tmp_path / "mx-flat.vmdk"  # disk [0, 1 MiB + 32 KiB): block 16 is half in it, half in the ZERO extent
    sparse_raw(first, MiB + 32 * 1024, [(MiB, b"\x05" * (32 * 1024))])
    second = tmp_path / "mx-s002.vmdk"  # disk [2 MiB, 4 MiB), its file ends 16 KiB into disk block 48
    sparse_raw(second, MiB + 16 * 1024, [(0, b"\x06" * 4096), (MiB, b"\x07" * (16 * 1024))])
    descriptor = tmp_path / "mx.vmdk"
    descriptor.write_text(
        '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="twoGbMaxExtentFlat"\n\n'
        f'RW {(MiB + 32 * 1024) // 512} FLAT "mx-flat.vmdk" 0\nRW {(MiB - 32 * 1024) // 512} ZERO\n'
        f'RW {2 * MiB // 512} FLAT "mx-s002.vmdk" 0\n\n#DDB\nddb.adapterType = "lsilogic"\n'
    )
    backing = seed.attach_disk_image(sim, vm_name, [descriptor, first, second], capacity_bytes=size)
    enable_cbt(sim, vm_name)
    with seed.session(sim) as source:
        vm = source.find_vm(vm_name)
        key = _disk(vm.config).key
        snap = _snapshot(vm, "extents")
        change_id = _disk(snap.config).backing.changeId
        assert _areas(vm, snap, key, "*", size) == [(MiB, BLOCK), (2 * MiB, BLOCK), (3 * MiB, BLOCK)]

        folder = datastore_path(sim, backing).parent
        with (folder / "mx-flat.vmdk").open("r+b") as f:  # the last 4 KiB of the first extent
            f.seek(MiB + 28 * 1024)
            f.write(b"\x08" * 4096)
        with (folder / "mx-s002.vmdk").open("r+b") as f:  # grows the file: block 48's rest still reads as zeros
            f.seek(MiB + BLOCK)
            f.write(b"\x09" * 512)
        later = _snapshot(vm, "later")
        assert _areas(vm, later, key, change_id, size) == [(MiB, BLOCK), (3 * MiB + BLOCK, BLOCK)]
        wait_for_task(vm.RemoveAllSnapshots_Task(), "remove all")
