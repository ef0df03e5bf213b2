"""Seeding the simulator with real data, for tests and the demo.

Both helpers go through the same paths a real vCenter offers: the datastore ``/folder``
HTTP endpoint (PUT, with the session cookie) and ``ReconfigVM_Task`` through pyvmomi.

Stable interface (convert, cutover and the demo call these):

- ``upload_file(sim_or_source, local_path, datastore, datastore_path) -> str``
- ``attach_disk_image(source_or_connection, vm_name, local_vmdk_files, *, mac=None,
  capacity_bytes=None, power_off=False) -> str``
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pyVmomi import vim

from core.errors import DiskError, NotFoundError, SourceError
from migrator.simulator import Simulator
from migrator.sources import SourceOptions
from migrator.sources.vsphere import VSphereSource, open_vsphere
from migrator.sources.vsphere.operations import power_off as _power_off
from migrator.sources.vsphere.operations import wait_for_task
from migrator.sources.vsphere.translate import vm_datastore_folder


@contextmanager
def session(sim_or_source: Simulator | VSphereSource) -> Iterator[VSphereSource]:
    """A VSphereSource for a Simulator (logged in with its credentials), or the given source itself.

    The simulator is our own loopback process with a self-signed certificate: it is reached
    with verification off, as ``--insecure`` would.
    """
    if isinstance(sim_or_source, VSphereSource):
        yield sim_or_source
        return
    sim = sim_or_source
    env_name = f"MIGRATOR_SEED_PASSWORD_{os.getpid()}"
    os.environ[env_name] = sim.password
    try:
        location = f"{sim.username}@{sim.host}:{sim.port}"
        source = open_vsphere(location, SourceOptions(insecure=True, password_env=env_name, prompt=False))
    finally:
        del os.environ[env_name]
    try:
        yield source
    finally:
        source.close()


def upload_file(
    sim_or_source: Simulator | VSphereSource, local_path: Path | str, datastore: str, datastore_path: str
) -> str:
    """PUT ``local_path`` to ``[datastore] datastore_path``; returns that datastore path.

    Goes to ``/folder/<path>?dcPath=<dc>&dsName=<ds>`` with the session cookie, streamed.
    """
    local = Path(local_path)
    target = f"[{datastore}] {datastore_path.lstrip('/')}"
    with session(sim_or_source) as source:
        url = source.datastore_file_url(target)
        size = local.stat().st_size
        headers = {
            **source.http_headers(),
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
        }
        with local.open("rb") as body:
            request = urllib.request.Request(url, data=body, headers=headers, method="PUT")
            try:
                with urllib.request.urlopen(request, context=source.ssl_context()) as response:
                    response.read()
            except urllib.error.HTTPError as error:
                raise SourceError(f"upload of {local.name} to {target} failed: HTTP {error.code}") from None
            except OSError as error:
                raise SourceError(f"upload of {local.name} to {target} failed: {error}") from None
    return target


def attach_disk_image(
    source_or_connection: Simulator | VSphereSource,
    vm_name: str,
    local_vmdk_files: list[Path],
    *,
    mac: str | None = None,
    capacity_bytes: int | None = None,
    power_off: bool = False,
) -> str:
    """Put a real VMDK behind ``vm_name``'s first disk; returns the disk's new backing file.

    ``local_vmdk_files[0]`` is the VMDK the disk points at (a descriptor, or a monolithic
    sparse/stream-optimized file); the rest are its extent files (e.g. ``x-flat.vmdk``,
    ``x-s001.vmdk``), uploaded beside it under their own names into the VM's folder on its
    datastore (from the VM's ``.vmx`` path). The disk's capacity becomes ``capacity_bytes``,
    or the image's virtual size (``qemu-img info``). With ``mac``, the first NIC gets that
    MAC (addressType manual). With ``power_off``, the VM is powered off first.
    A single-file VMDK also gets an empty ``<name>-flat.vmdk`` beside it: vcsim refuses a
    disk backing without one (a simulator quirk; the image never refers to it).
    """
    if not local_vmdk_files:
        raise DiskError("attach_disk_image needs at least one VMDK file")
    files = [Path(f) for f in local_vmdk_files]
    capacity = capacity_bytes if capacity_bytes is not None else virtual_size(files[0])
    with session(source_or_connection) as source:
        vm = source.find_vm(vm_name)
        if power_off:
            _power_off(vm, vm_name)
        config = vm.config
        place = vm_datastore_folder(config.files.vmPathName)
        if place is None:
            raise SourceError(f"VM {vm_name!r} has no datastore path: {config.files.vmPathName!r}")
        datastore, folder = place
        prefix = f"{folder}/" if folder else ""
        for file in files:
            upload_file(source, file, datastore, prefix + file.name)
        flat_name = files[0].name.replace(".vmdk", "-flat.vmdk", 1)
        if flat_name != files[0].name and flat_name not in {f.name for f in files}:
            # vcsim only accepts a disk backing whose "<name>-flat.vmdk" exists (it checks that
            # name first); a single-file VMDK (monolithic sparse, stream-optimized) has none, so
            # an empty placeholder stands beside it. The VMDK itself never refers to it.
            with tempfile.TemporaryDirectory() as tmp:
                placeholder = Path(tmp) / flat_name
                placeholder.touch()
                upload_file(source, placeholder, datastore, prefix + flat_name)
        backing_file = f"[{datastore}] {folder}/{files[0].name}" if folder else f"[{datastore}] {files[0].name}"

        devices = list(config.hardware.device)
        disk = next((d for d in devices if isinstance(d, vim.vm.device.VirtualDisk)), None)
        if disk is None:
            raise NotFoundError(f"VM {vm_name!r} has no disk to attach the image to")
        disk.backing.fileName = backing_file
        disk.capacityInKB = (capacity + 1023) // 1024
        disk.capacityInBytes = capacity
        edit = vim.vm.device.VirtualDeviceSpec.Operation.edit
        changes = [vim.vm.device.VirtualDeviceSpec(operation=edit, device=disk)]
        if mac is not None:
            nic = next((d for d in devices if isinstance(d, vim.vm.device.VirtualEthernetCard)), None)
            if nic is None:
                raise NotFoundError(f"VM {vm_name!r} has no NIC to set the MAC address on")
            nic.macAddress = mac
            nic.addressType = "manual"
            changes.append(vim.vm.device.VirtualDeviceSpec(operation=edit, device=nic))
        task = vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=changes))
        wait_for_task(task, f"attach disk image to {vm_name}")
    return backing_file


def virtual_size(path: Path) -> int:
    """The disk's virtual size in bytes, as qemu-img reads it (any VMDK kind, raw, qcow2)."""
    try:
        result = subprocess.run(
            ["qemu-img", "info", "--output=json", str(path)], capture_output=True, text=True, check=False
        )
    except OSError as error:
        raise DiskError(f"cannot run qemu-img: {error}") from None
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        raise DiskError(f"cannot read {path}: {lines[-1] if lines else 'qemu-img info failed'}")
    return int(json.loads(result.stdout)["virtual-size"])
