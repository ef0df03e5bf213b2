"""Disks: disks and CD-ROMs on virtio, SATA, SCSI or USB, their caches and boot order (KubeVirt's converter:
disks)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from runtime.domain.elements import sub, unknown
from runtime.domain.model import ResolvedVolume, UnsupportedSpecError

DISK_FIELDS = {"name", "disk", "cdrom", "bootOrder", "cache", "io", "shareable", "serial", "dedicatedIOThread"}
DISK_BUSES = {"virtio": "vd", "sata": "sd", "scsi": "sd", "usb": "sd"}
CACHE_MODES = {"none", "writethrough", "writeback"}


def _target_name(prefix: str, index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("a") + rest) + letters
    return prefix + letters


def disks(
    devices: ET.Element, spec: Mapping[str, Any], devices_spec: Mapping[str, Any], volumes: Mapping[str, ResolvedVolume]
) -> None:
    spec_volumes = {volume.get("name"): volume for volume in spec.get("volumes") or []}
    counters: dict[str, int] = {}
    scsi_controller = False
    for index, disk in enumerate(devices_spec.get("disks") or []):
        path = f"spec.domain.devices.disks[{index}]"
        unknown(disk, DISK_FIELDS, path)
        name = disk.get("name")
        empty_cdrom = disk.get("cdrom") is not None and name not in spec_volumes
        if name not in spec_volumes and not empty_cdrom:
            raise UnsupportedSpecError(f"{path}.name", f"no volume named {name!r} in spec.volumes")
        if name not in volumes and not empty_cdrom:
            raise UnsupportedSpecError(f"{path}.name", f"volume {name!r} was not resolved to a disk on this host")
        resolved = volumes.get(name)
        if disk.get("cdrom") is not None:
            kind, device_spec = "cdrom", disk["cdrom"] or {}
            unknown(device_spec, {"bus", "readonly", "tray"}, f"{path}.cdrom")
            bus = device_spec.get("bus") or "sata"
        elif disk.get("lun") is not None:
            raise UnsupportedSpecError(f"{path}.lun", "LUN passthrough is not supported")
        else:
            kind, device_spec = "disk", disk.get("disk") or {}
            unknown(device_spec, {"bus", "readonly", "pciAddress"}, f"{path}.disk")
            bus = device_spec.get("bus") or "virtio"
        if bus not in DISK_BUSES:
            raise UnsupportedSpecError(f"{path}.{kind}.bus", f"unknown bus {bus!r}")
        prefix = DISK_BUSES[bus]
        target = _target_name(prefix, counters.get(prefix, 0))
        counters[prefix] = counters.get(prefix, 0) + 1
        block = resolved is not None and resolved.block
        element = sub(devices, "disk", type="block" if block else "file", device=kind)
        # a CD-ROM without a volume is an empty drive (what convert writes for a VM's idle CD-ROM)
        driver = sub(element, "driver", name="qemu", type=resolved.format if resolved is not None else "raw")
        cache = disk.get("cache")
        if cache:
            if cache not in CACHE_MODES:
                raise UnsupportedSpecError(f"{path}.cache", f"unknown cache mode {cache!r}")
            driver.set("cache", cache)
        if disk.get("io"):
            if disk["io"] not in ("native", "threads"):
                raise UnsupportedSpecError(f"{path}.io", f"unknown io mode {disk['io']!r}")
            driver.set("io", disk["io"])
        if resolved is not None:
            sub(element, "source", **({"dev": str(resolved.path)} if block else {"file": str(resolved.path)}))
        sub(element, "target", dev=target, bus=bus)
        if kind == "cdrom" or device_spec.get("readonly"):
            sub(element, "readonly")
        if disk.get("shareable"):
            sub(element, "shareable")
        if disk.get("serial"):
            sub(element, "serial", str(disk["serial"]))
        if disk.get("bootOrder") is not None:
            sub(element, "boot", order=str(int(disk["bootOrder"])))
        sub(element, "alias", name=f"ua-{name}")
        if bus == "scsi" and not scsi_controller:
            sub(devices, "controller", type="scsi", index="0", model="virtio-scsi")
            scsi_controller = True
