"""``kubevirt.io/v1`` VirtualMachineInstance spec → libvirt domain XML.

A pure function over plain data: the spec (the ``spec`` of a VMI, i.e. a VM's
``spec.template.spec``), where each volume really is, and host options. Anything the spec
asks for that cannot be honoured raises :class:`UnsupportedSpecError` naming the field;
nothing is dropped silently. Fields that only matter to the scheduler (node selectors,
affinity, ...) are not the launcher's business and are accepted as they are.

One module per device family, as KubeVirt's converter is split: ``compute`` (memory, CPU),
``firmware`` (machine, BIOS/EFI, SMBIOS), ``features`` (features and clock), ``disks``,
``network``, ``consoles``, ``devices`` (the rest); ``elements`` holds what they share.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from runtime.domain import compute, consoles, devices, disks, features, firmware, network
from runtime.domain.elements import sub, unknown
from runtime.domain.model import DomainOptions, ResolvedVolume, UnsupportedSpecError

# spec fields the scheduler or the controller honour; the domain does not depend on them
SCHEDULING_FIELDS = {
    "nodeSelector",
    "affinity",
    "tolerations",
    "topologySpreadConstraints",
    "schedulerName",
    "priorityClassName",
    "evictionStrategy",
    "hostname",
    "subdomain",
    "dnsConfig",
    "dnsPolicy",
    "terminationGracePeriodSeconds",
    "startStrategy",
    "readinessProbe",
    "livenessProbe",
}
SPEC_FIELDS = SCHEDULING_FIELDS | {"domain", "volumes", "networks", "architecture"}
DOMAIN_FIELDS = {"cpu", "memory", "resources", "machine", "firmware", "features", "clock", "devices", "ioThreadsPolicy"}
DEVICE_FIELDS = {
    "disks",
    "interfaces",
    "autoattachSerialConsole",
    "autoattachGraphicsDevice",
    "autoattachMemBalloon",
    "autoattachPodInterface",
    "autoattachInputDevice",
    "rng",
    "tpm",
    "watchdog",
    "inputs",
    "networkInterfaceMultiqueue",
    "blockMultiQueue",
}


def domain_xml(spec: Mapping[str, Any], volumes: Mapping[str, ResolvedVolume], options: DomainOptions) -> str:
    """The libvirt domain XML (a string) for a VM instance spec."""
    return ET.tostring(domain_element(spec, volumes, options), encoding="unicode")


def domain_element(
    spec: Mapping[str, Any], volumes: Mapping[str, ResolvedVolume], options: DomainOptions
) -> ET.Element:
    unknown(spec, SPEC_FIELDS, "spec")
    if spec.get("architecture") not in (None, "", "amd64"):
        raise UnsupportedSpecError("spec.architecture", f"{spec['architecture']!r}: only amd64 runs here")
    domain_spec: Mapping[str, Any] = spec.get("domain") or {}
    unknown(domain_spec, DOMAIN_FIELDS, "spec.domain")
    devices_spec: Mapping[str, Any] = domain_spec.get("devices") or {}
    unknown(devices_spec, DEVICE_FIELDS, "spec.domain.devices")
    firmware_spec: Mapping[str, Any] = domain_spec.get("firmware") or {}
    cpu_spec: Mapping[str, Any] = domain_spec.get("cpu") or {}

    root = ET.Element("domain", {"type": "kvm" if options.accelerator == "kvm" else "qemu"})
    sub(root, "name", options.name)
    firmware.identity(root, firmware_spec)
    memory_kib = compute.memory_bytes(domain_spec) // 1024
    sub(root, "memory", str(memory_kib), unit="KiB")
    sub(root, "currentMemory", str(memory_kib), unit="KiB")
    shape = compute.topology(cpu_spec)
    sub(root, "vcpu", str(shape[0] * shape[1] * shape[2]), placement="static")
    firmware.sysinfo(root, firmware_spec)
    secure_boot = firmware.boot(root, domain_spec, firmware_spec, options)
    features.features(root, domain_spec.get("features") or {}, secure_boot)
    compute.cpu(root, cpu_spec, shape, options)
    features.clock(root, domain_spec.get("clock") or {})
    sub(root, "on_poweroff", "destroy")
    sub(root, "on_reboot", "restart")
    sub(root, "on_crash", "destroy")

    device_list = sub(root, "devices")
    if options.emulator:
        sub(device_list, "emulator", options.emulator)
    disks.disks(device_list, spec, devices_spec, volumes)
    network.interfaces(root, device_list, spec, devices_spec, options)
    if devices_spec.get("autoattachSerialConsole", True):
        consoles.serial(device_list, options)
    devices.others(device_list, devices_spec)
    if options.run_as is not None:
        uid, gid = options.run_as
        seclabel = sub(root, "seclabel", type="static", model="dac", relabel="no")
        sub(seclabel, "label", f"+{uid}:+{gid}")
    return root
