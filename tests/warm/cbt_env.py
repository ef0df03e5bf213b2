"""What the warm-migration tests share: a VM on the simulator with a flat VMDK, and "guest writes".

A guest write is a write into the disk's flat file in the simulator's datastore directory (the
simulator's changed-block tracking hashes that file at each snapshot). The VM is given a disk whose
descriptor and ``-flat.vmdk`` are uploaded through the datastore's ``/folder`` endpoint, as any file.
"""

from __future__ import annotations

import os
import random
import subprocess
import uuid
from pathlib import Path

from pyVmomi import vim

from migrator import simulator
from migrator.simulator import seed
from migrator.sources.vsphere.operations import wait_for_task

BLOCK = 64 << 10


def flat_vmdk(raw: Path, dest: Path, name: str) -> list[Path]:
    """``raw`` as a monolithicFlat VMDK: [descriptor, flat extent] in ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    descriptor = dest / f"{name}.vmdk"
    subprocess.run(
        [
            "qemu-img",
            "convert",
            "-q",
            "-f",
            "raw",
            "-O",
            "vmdk",
            "-o",
            "subformat=monolithicFlat",
            str(raw),
            str(descriptor),
        ],
        check=True,
    )
    return [descriptor, dest / f"{name}-flat.vmdk"]


def sparse_raw(path: Path, size: int, data: list[tuple[int, bytes]]) -> Path:
    with path.open("wb") as f:
        f.truncate(size)
        for offset, chunk in data:
            f.seek(offset)
            f.write(chunk)
    return path


def attach(sim: simulator.Simulator, vm: str, files: list[Path], *, power_on: bool = True) -> str:
    """Put ``files`` behind ``vm``'s first disk; returns its backing "[ds] path"."""
    backing = seed.attach_disk_image(sim, vm, files)
    if power_on:
        with seed.session(sim) as source:
            if source.power_state(vm) != "poweredOn":
                source.power_on(vm)
    return backing


def rename(sim: simulator.Simulator, vm: str, new_name: str) -> str:
    """Give the VM a name and UUID of its own: its target, a libvirt domain on the system libvirtd that other
    work on this machine shares, takes both (vcsim gives the same VM the same UUID in every simulator)."""
    with seed.session(sim) as source:
        found = source.find_vm(vm)
        wait_for_task(found.Rename_Task(newName=new_name), f"rename {vm}")
        spec = vim.vm.ConfigSpec(uuid=str(uuid.uuid4()), instanceUuid=str(uuid.uuid4()))
        wait_for_task(found.ReconfigVM_Task(spec=spec), f"new UUIDs for {new_name}")
    return new_name


def datastore_path(sim: simulator.Simulator, backing: str) -> Path:
    """The local file behind "[ds] folder/file" in the simulator's datastore directory."""
    ds_name, rel = backing[1:].split("] ", 1)
    with seed.session(sim) as source:
        content = source.service_instance.content
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.Datastore], True)
        try:
            ds = next(d for d in view.view if d.name == ds_name)
            return Path(ds.info.url) / rel
        finally:
            view.Destroy()


def enable_cbt(sim: simulator.Simulator, vm: str) -> None:
    """What an administrator does: changeTrackingEnabled through ReconfigVM (tracking starts at the next snapshot)."""
    with seed.session(sim) as source:
        task = source.find_vm(vm).ReconfigVM_Task(spec=vim.vm.ConfigSpec(changeTrackingEnabled=True))
        wait_for_task(task, f"enable CBT on {vm}")


def guest_writes(flat: Path, count: int, size: int, *, seed_value: int, region: tuple[int, int]) -> list[int]:
    """``count`` writes of ``size`` random bytes in [region), each in blocks of its own; returns the offsets.

    Offsets lie on a grid of ``size`` rounded up to whole tracking blocks: no two writes share a block,
    so what changed is exactly ``count`` times that rounded size.
    """
    rng = random.Random(seed_value)
    step = -(-size // BLOCK) * BLOCK
    lo, hi = region
    slots = sorted(rng.sample(range(-(-lo // step), (hi - step) // step), count))
    fd = os.open(flat, os.O_WRONLY)
    try:
        for slot in slots:
            os.pwrite(fd, rng.randbytes(size), slot * step)
        os.fsync(fd)
    finally:
        os.close(fd)
    return [slot * step for slot in slots]


def snapshot_names(sim: simulator.Simulator, vm: str) -> list[str]:
    """The VM's snapshots, read as the product reads them (the property collector)."""
    with seed.session(sim) as source:
        return [s.name for s in source.vm_inventory(vm).snapshots]
