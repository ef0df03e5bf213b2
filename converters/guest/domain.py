"""The libvirt domain XML virt-v2v reads with ``-i libvirtxml``: the copied target images, as the source had them.

Pure. virt-v2v takes the guest's name, memory, vCPUs, firmware, disks (file, format, bus) and NICs
(MAC, model, network) from it; the buses and models are the source's, since the guest has not
been converted yet.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from converters.guest.model import ConversionRequest
from core.devices import disk_target_name

# source bus → libvirt disk bus and the device prefix virt-v2v expects on it
_BUS = {"scsi": ("scsi", "sd"), "sata": ("sata", "sd"), "ide": ("ide", "hd"), "nvme": ("sata", "sd")}
# VMware NIC models that libvirt names the same; anything else is presented as e1000
_NIC_MODELS = {"vmxnet3", "e1000", "e1000e", "rtl8139", "virtio"}


def domain_xml(request: ConversionRequest, disk_paths: list[Path] | None = None) -> str:
    """The domain for ``request``; ``disk_paths`` (same order) replaces the disks' paths (the overlays)."""
    paths = disk_paths if disk_paths is not None else [d.path for d in request.disks]
    formats = ["qcow2" if disk_paths is not None else d.format for d in request.disks]
    domain = ET.Element("domain", type="kvm")
    ET.SubElement(domain, "name").text = request.name
    ET.SubElement(domain, "memory", unit="MiB").text = str(request.memory_mib)
    ET.SubElement(domain, "vcpu").text = str(request.vcpus)
    os_element = ET.SubElement(domain, "os", {"firmware": "efi"} if request.firmware == "efi" else {})
    ET.SubElement(os_element, "type", arch="x86_64").text = "hvm"
    devices = ET.SubElement(domain, "devices")
    counters: dict[str, int] = {}
    for disk, path, fmt in zip(request.disks, paths, formats, strict=True):
        bus, prefix = _BUS.get(disk.source_bus, ("sata", "sd"))
        index = counters.get(prefix, 0)
        counters[prefix] = index + 1
        element = ET.SubElement(devices, "disk", type="file", device="disk")
        ET.SubElement(element, "driver", name="qemu", type=fmt)
        ET.SubElement(element, "source", file=str(path))
        ET.SubElement(element, "target", dev=disk_target_name(prefix, index), bus=bus)
    for nic in request.nics:
        element = ET.SubElement(devices, "interface", type="network")
        ET.SubElement(element, "mac", address=nic.mac)
        ET.SubElement(element, "source", network=nic.network or "default")
        ET.SubElement(element, "model", type=nic.source_model if nic.source_model in _NIC_MODELS else "e1000")
    ET.indent(domain)
    return ET.tostring(domain, encoding="unicode") + "\n"
