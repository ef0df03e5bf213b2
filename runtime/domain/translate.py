"""``kubevirt.io/v1`` VirtualMachineInstance spec → libvirt domain XML.

A pure function over plain data: the spec (the ``spec`` of a VMI, i.e. a VM's
``spec.template.spec``), where each volume really is, and host options. Anything the spec
asks for that cannot be honoured raises :class:`UnsupportedSpecError` naming the field;
nothing is dropped silently. Fields that only matter to the scheduler (node selectors,
affinity, ...) are not the launcher's business and are accepted as they are.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from kubernetes.utils.quantity import parse_quantity as kubernetes_quantity

from runtime.domain.model import (
    OVMF_CODE,
    OVMF_CODE_SECBOOT,
    OVMF_VARS,
    OVMF_VARS_SECBOOT,
    DomainOptions,
    PortForward,
    ResolvedVolume,
    UnsupportedSpecError,
)

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
DISK_FIELDS = {"name", "disk", "cdrom", "bootOrder", "cache", "io", "shareable", "serial", "dedicatedIOThread"}
INTERFACE_FIELDS = {"name", "model", "macAddress", "masquerade", "bridge", "slirp", "ports", "bootOrder"}
DISK_BUSES = {"virtio": "vd", "sata": "sd", "scsi": "sd", "usb": "sd"}
NIC_MODELS = {"virtio", "e1000", "e1000e", "rtl8139", "ne2k_pci", "pcnet"}
CACHE_MODES = {"none", "writethrough", "writeback"}
HYPERV_FEATURES = {
    "relaxed",
    "vapic",
    "spinlocks",
    "vpindex",
    "runtime",
    "synic",
    "stimer",
    "reset",
    "vendorid",
    "frequencies",
    "reenlightenment",
    "tlbflush",
    "ipi",
}


def parse_quantity(value: Any, field_path: str) -> int:
    """A Kubernetes resource quantity ("1Gi", "512M", 1073741824) in bytes."""
    try:
        return int(kubernetes_quantity(str(value).strip()))
    except ValueError:
        raise UnsupportedSpecError(field_path, f"not a resource quantity: {value!r}") from None


def _unknown(data: Mapping[str, Any], known: set[str], path: str) -> None:
    for key, value in data.items():
        if key not in known and value not in (None, {}, [], False):
            raise UnsupportedSpecError(f"{path}.{key}", "not supported by this runtime")


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, {k.rstrip("_"): v for k, v in attrs.items()})
    if text is not None:
        element.text = text
    return element


def domain_xml(spec: Mapping[str, Any], volumes: Mapping[str, ResolvedVolume], options: DomainOptions) -> str:
    """The libvirt domain XML (a string) for a VM instance spec."""
    return ET.tostring(domain_element(spec, volumes, options), encoding="unicode")


def domain_element(
    spec: Mapping[str, Any], volumes: Mapping[str, ResolvedVolume], options: DomainOptions
) -> ET.Element:
    _unknown(spec, SPEC_FIELDS, "spec")
    if spec.get("architecture") not in (None, "", "amd64"):
        raise UnsupportedSpecError("spec.architecture", f"{spec['architecture']!r}: only amd64 runs here")
    domain_spec: Mapping[str, Any] = spec.get("domain") or {}
    _unknown(domain_spec, DOMAIN_FIELDS, "spec.domain")
    devices_spec: Mapping[str, Any] = domain_spec.get("devices") or {}
    _unknown(devices_spec, DEVICE_FIELDS, "spec.domain.devices")

    root = ET.Element("domain", {"type": "kvm" if options.accelerator == "kvm" else "qemu"})
    _sub(root, "name", options.name)
    firmware: Mapping[str, Any] = domain_spec.get("firmware") or {}
    _unknown(firmware, {"uuid", "serial", "bootloader"}, "spec.domain.firmware")
    if firmware.get("uuid"):
        _sub(root, "uuid", str(firmware["uuid"]))
    memory_kib = _memory_bytes(domain_spec) // 1024
    _sub(root, "memory", str(memory_kib), unit="KiB")
    _sub(root, "currentMemory", str(memory_kib), unit="KiB")
    sockets, cores, threads = _topology(domain_spec.get("cpu") or {})
    _sub(root, "vcpu", str(sockets * cores * threads), placement="static")
    if firmware.get("serial"):
        sysinfo = _sub(root, "sysinfo", type="smbios")
        system = _sub(sysinfo, "system")
        _sub(system, "entry", str(firmware["serial"]), name="serial")
        if firmware.get("uuid"):
            _sub(system, "entry", str(firmware["uuid"]), name="uuid")

    secure_boot = _os(root, domain_spec, firmware, options)
    _features(root, domain_spec.get("features") or {}, secure_boot)
    _cpu(root, domain_spec.get("cpu") or {}, (sockets, cores, threads), options)
    _clock(root, domain_spec.get("clock") or {})
    _sub(root, "on_poweroff", "destroy")
    _sub(root, "on_reboot", "restart")
    _sub(root, "on_crash", "destroy")

    devices = _sub(root, "devices")
    if options.emulator:
        _sub(devices, "emulator", options.emulator)
    _disks(devices, spec, devices_spec, volumes)
    _interfaces(root, devices, spec, devices_spec, options)
    if devices_spec.get("autoattachSerialConsole", True):
        _serial(devices, options)
    if devices_spec.get("tpm") is not None:
        tpm_spec = devices_spec["tpm"] or {}
        _unknown(tpm_spec, {"persistent", "enabled"}, "spec.domain.devices.tpm")
        if tpm_spec.get("enabled", True):
            tpm = _sub(devices, "tpm", model="tpm-crb")
            backend = _sub(tpm, "backend", type="emulator", version="2.0")
            if tpm_spec.get("persistent"):
                backend.set("persistent_state", "yes")
    if devices_spec.get("rng") is not None:
        rng = _sub(devices, "rng", model="virtio")
        _sub(rng, "backend", "/dev/urandom", model="random")
    if devices_spec.get("watchdog"):
        _watchdog(devices, devices_spec["watchdog"])
    for index, device in enumerate(devices_spec.get("inputs") or []):
        path = f"spec.domain.devices.inputs[{index}]"
        _unknown(device, {"name", "type", "bus"}, path)
        if device.get("type", "tablet") != "tablet" or device.get("bus", "usb") not in ("usb", "virtio"):
            raise UnsupportedSpecError(path, "only a usb or virtio tablet is supported")
        _sub(devices, "input", type="tablet", bus=device.get("bus", "usb"))
    if devices.find("disk/target[@bus='usb']") is None and devices.find("input[@bus='usb']") is None:
        # as KubeVirt does: no USB controller unless a device needs one (SeaBIOS spends ~1 s probing it)
        _sub(devices, "controller", type="usb", index="0", model="none")
    if devices_spec.get("autoattachMemBalloon", True):
        _sub(devices, "memballoon", model="virtio")
    else:
        _sub(devices, "memballoon", model="none")
    # a guest kernel panic reaches libvirt (pvpanic on the ISA port 0x505) and stops the domain
    _sub(devices, "panic", model="isa")
    if options.run_as is not None:
        uid, gid = options.run_as
        seclabel = _sub(root, "seclabel", type="static", model="dac", relabel="no")
        _sub(seclabel, "label", f"+{uid}:+{gid}")
    return root


def _memory_bytes(domain_spec: Mapping[str, Any]) -> int:
    memory = domain_spec.get("memory") or {}
    _unknown(memory, {"guest", "hugepages"}, "spec.domain.memory")
    if memory.get("hugepages"):
        raise UnsupportedSpecError("spec.domain.memory.hugepages", "hugepages are not supported by this runtime")
    if memory.get("guest"):
        return parse_quantity(memory["guest"], "spec.domain.memory.guest")
    resources = domain_spec.get("resources") or {}
    for kind in ("requests", "limits"):
        value = (resources.get(kind) or {}).get("memory")
        if value:
            return parse_quantity(value, f"spec.domain.resources.{kind}.memory")
    raise UnsupportedSpecError("spec.domain.memory.guest", "no memory size (memory.guest or resources.requests.memory)")


def _topology(cpu: Mapping[str, Any]) -> tuple[int, int, int]:
    _unknown(cpu, {"cores", "sockets", "threads", "model", "features", "dedicatedCpuPlacement"}, "spec.domain.cpu")
    if cpu.get("dedicatedCpuPlacement"):
        raise UnsupportedSpecError("spec.domain.cpu.dedicatedCpuPlacement", "CPU pinning is not supported")
    values = []
    for key in ("sockets", "cores", "threads"):
        value = cpu.get(key, 1) or 1
        if not isinstance(value, int) or value < 1:
            raise UnsupportedSpecError(f"spec.domain.cpu.{key}", f"must be a positive integer, not {value!r}")
        values.append(value)
    return values[0], values[1], values[2]


def _cpu(root: ET.Element, cpu: Mapping[str, Any], topology: tuple[int, int, int], options: DomainOptions) -> None:
    model = cpu.get("model") or "host-model"
    if model in ("host-model", "host-passthrough"):
        # TCG cannot pass the host CPU through: the richest emulated CPU is the honest equivalent
        mode = model if options.accelerator == "kvm" else "maximum"
        element = _sub(root, "cpu", mode=mode)
        if mode == "host-passthrough":
            element.set("check", "none")
    else:
        element = _sub(root, "cpu", mode="custom", match="exact", check="none")
        _sub(element, "model", model, fallback="forbid")
    sockets, cores, threads = topology
    _sub(element, "topology", sockets=str(sockets), dies="1", cores=str(cores), threads=str(threads))
    for index, feature in enumerate(cpu.get("features") or []):
        policy = feature.get("policy", "require")
        if policy not in ("force", "require", "optional", "disable", "forbid"):
            raise UnsupportedSpecError(f"spec.domain.cpu.features[{index}].policy", f"unknown policy {policy!r}")
        _sub(element, "feature", policy=policy, name=str(feature["name"]))


def _os(root: ET.Element, domain_spec: Mapping[str, Any], firmware: Mapping[str, Any], options: DomainOptions) -> bool:
    machine = (domain_spec.get("machine") or {}).get("type") or "q35"
    if not (machine == "q35" or machine.startswith("pc-q35")):
        raise UnsupportedSpecError("spec.domain.machine.type", f"{machine!r}: only q35 machines are supported")
    os_element = _sub(root, "os")
    _sub(os_element, "type", "hvm", arch="x86_64", machine=machine)
    bootloader = firmware.get("bootloader") or {}
    _unknown(bootloader, {"bios", "efi"}, "spec.domain.firmware.bootloader")
    secure_boot = False
    if bootloader.get("efi") is not None:
        efi = bootloader["efi"] or {}
        _unknown(efi, {"secureBoot", "persistent"}, "spec.domain.firmware.bootloader.efi")
        # KubeVirt's default for an efi bootloader is secure boot on
        secure_boot = bool(efi.get("secureBoot", True))
        code, template = (OVMF_CODE_SECBOOT, OVMF_VARS_SECBOOT) if secure_boot else (OVMF_CODE, OVMF_VARS)
        _sub(os_element, "loader", str(code), readonly="yes", type="pflash", secure="yes" if secure_boot else "no")
        nvram = _sub(os_element, "nvram", template=str(template))
        if options.nvram_path is not None:
            nvram.text = str(options.nvram_path)
    else:
        bios = bootloader.get("bios") or {}
        _unknown(bios, {"useSerial"}, "spec.domain.firmware.bootloader.bios")
        if bios.get("useSerial"):
            _sub(os_element, "bios", useserial="yes")
    if firmware.get("serial"):
        _sub(os_element, "smbios", mode="sysinfo")
    return secure_boot


def _features(root: ET.Element, features: Mapping[str, Any], secure_boot: bool) -> None:
    _unknown(features, {"acpi", "apic", "smm", "hyperv", "pvspinlock", "kvm"}, "spec.domain.features")
    element = _sub(root, "features")
    # KubeVirt enables ACPI unless the feature is present and disabled; a guest needs it for ACPI shutdown
    if (features.get("acpi") or {}).get("enabled", True):
        _sub(element, "acpi")
    if (features.get("apic") or {}).get("enabled", True):
        _sub(element, "apic")
    smm = features.get("smm")
    if secure_boot and smm is not None and not smm.get("enabled", True):
        raise UnsupportedSpecError("spec.domain.features.smm", "secure boot needs SMM")
    if secure_boot or (smm is not None and smm.get("enabled", True)):
        _sub(element, "smm", state="on")
    hyperv = features.get("hyperv")
    if hyperv:
        hv = _sub(element, "hyperv", mode="custom")
        for name, value in hyperv.items():
            path = f"spec.domain.features.hyperv.{name}"
            if name not in HYPERV_FEATURES:
                raise UnsupportedSpecError(path, "not supported by this runtime")
            value = value or {}
            state = "on" if value.get("enabled", True) else "off"
            item = _sub(hv, name, state=state)
            if name == "spinlocks" and state == "on":
                item.set("retries", str(value.get("spinlocks", 4096)))
            if name == "vendorid" and state == "on":
                item.set("value", str(value.get("vendorid", "KubeVirt")))
            if name == "stimer" and state == "on" and (value.get("direct") or {}).get("enabled"):
                _sub(item, "direct", state="on")
    if features.get("pvspinlock") is not None:
        state = "on" if (features["pvspinlock"] or {}).get("enabled", True) else "off"
        _sub(element, "pvspinlock", state=state)
    if (features.get("kvm") or {}).get("hidden"):
        kvm = _sub(element, "kvm")
        _sub(kvm, "hidden", state="on")


def _clock(root: ET.Element, clock: Mapping[str, Any]) -> None:
    _unknown(clock, {"utc", "timezone", "timer"}, "spec.domain.clock")
    if clock.get("timezone"):
        element = _sub(root, "clock", offset="timezone", timezone=str(clock["timezone"]))
    else:
        element = _sub(root, "clock", offset="utc")
        offset = (clock.get("utc") or {}).get("offsetSeconds")
        if offset:
            element.set("offset", "variable")
            element.set("adjustment", str(int(offset)))
            element.set("basis", "utc")
    for name, timer in (clock.get("timer") or {}).items():
        if name not in ("hpet", "pit", "rtc", "kvm", "hyperv"):
            raise UnsupportedSpecError(f"spec.domain.clock.timer.{name}", "unknown timer")
        timer = timer or {}
        attrs = {"name": name, "present": "yes" if timer.get("present", True) else "no"}
        policy = timer.get("tickPolicy")
        if policy:
            attrs["tickpolicy"] = {"delay": "delay", "catchup": "catchup", "merge": "merge", "discard": "discard"}.get(
                policy, policy
            )
        _sub(element, "timer", **attrs)


def _target_name(prefix: str, index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("a") + rest) + letters
    return prefix + letters


def _disks(
    devices: ET.Element, spec: Mapping[str, Any], devices_spec: Mapping[str, Any], volumes: Mapping[str, ResolvedVolume]
) -> None:
    spec_volumes = {volume.get("name"): volume for volume in spec.get("volumes") or []}
    counters: dict[str, int] = {}
    scsi_controller = False
    for index, disk in enumerate(devices_spec.get("disks") or []):
        path = f"spec.domain.devices.disks[{index}]"
        _unknown(disk, DISK_FIELDS, path)
        name = disk.get("name")
        empty_cdrom = disk.get("cdrom") is not None and name not in spec_volumes
        if name not in spec_volumes and not empty_cdrom:
            raise UnsupportedSpecError(f"{path}.name", f"no volume named {name!r} in spec.volumes")
        if name not in volumes and not empty_cdrom:
            raise UnsupportedSpecError(f"{path}.name", f"volume {name!r} was not resolved to a disk on this host")
        resolved = volumes.get(name)
        if disk.get("cdrom") is not None:
            kind, device_spec = "cdrom", disk["cdrom"] or {}
            _unknown(device_spec, {"bus", "readonly", "tray"}, f"{path}.cdrom")
            bus = device_spec.get("bus") or "sata"
        elif disk.get("lun") is not None:
            raise UnsupportedSpecError(f"{path}.lun", "LUN passthrough is not supported")
        else:
            kind, device_spec = "disk", disk.get("disk") or {}
            _unknown(device_spec, {"bus", "readonly", "pciAddress"}, f"{path}.disk")
            bus = device_spec.get("bus") or "virtio"
        if bus not in DISK_BUSES:
            raise UnsupportedSpecError(f"{path}.{kind}.bus", f"unknown bus {bus!r}")
        prefix = DISK_BUSES[bus]
        target = _target_name(prefix, counters.get(prefix, 0))
        counters[prefix] = counters.get(prefix, 0) + 1
        block = resolved is not None and resolved.block
        element = _sub(devices, "disk", type="block" if block else "file", device=kind)
        # a CD-ROM without a volume is an empty drive (what convert writes for a VM's idle CD-ROM)
        driver = _sub(element, "driver", name="qemu", type=resolved.format if resolved is not None else "raw")
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
            _sub(element, "source", **({"dev": str(resolved.path)} if block else {"file": str(resolved.path)}))
        _sub(element, "target", dev=target, bus=bus)
        if kind == "cdrom" or device_spec.get("readonly"):
            _sub(element, "readonly")
        if disk.get("shareable"):
            _sub(element, "shareable")
        if disk.get("serial"):
            _sub(element, "serial", str(disk["serial"]))
        if disk.get("bootOrder") is not None:
            _sub(element, "boot", order=str(int(disk["bootOrder"])))
        _sub(element, "alias", name=f"ua-{name}")
        if bus == "scsi" and not scsi_controller:
            _sub(devices, "controller", type="scsi", index="0", model="virtio-scsi")
            scsi_controller = True


def _interfaces(
    root: ET.Element,
    devices: ET.Element,
    spec: Mapping[str, Any],
    devices_spec: Mapping[str, Any],
    options: DomainOptions,
) -> None:
    if not devices_spec.get("interfaces") and not spec.get("networks"):
        if devices_spec.get("autoattachPodInterface", True):
            # KubeVirt gives a VMI without networks one pod-network NIC
            element = _sub(devices, "interface", type="user")
            _sub(element, "model", type="virtio")
            _sub(element, "rom", enabled="no")
            _sub(element, "alias", name="ua-default")
        return
    networks = {}
    for index, network in enumerate(spec.get("networks") or []):
        _unknown(network, {"name", "pod", "multus"}, f"spec.networks[{index}]")
        networks[network.get("name")] = (index, network)
    for index, interface in enumerate(devices_spec.get("interfaces") or []):
        path = f"spec.domain.devices.interfaces[{index}]"
        for binding in ("sriov", "macvtap", "passt"):
            if interface.get(binding) is not None:
                raise UnsupportedSpecError(f"{path}.{binding}", f"the {binding} binding is not supported")
        _unknown(interface, INTERFACE_FIELDS, path)
        name = interface.get("name")
        if name not in networks:
            raise UnsupportedSpecError(f"{path}.name", f"no network named {name!r} in spec.networks")
        network_index, network = networks[name]
        model = interface.get("model") or "virtio"
        if model not in NIC_MODELS:
            raise UnsupportedSpecError(f"{path}.model", f"unknown NIC model {model!r}")
        if network.get("pod") is not None:
            # the pod network: the guest reaches out through user-mode networking, as masquerade does
            forwards = _forwards(interface, path, options)
            if forwards:
                # libvirt 9.0 (Debian 12) has neither <portForward> for slirp nor the passt backend
                # (9.2): a NIC with forwarded ports is given to QEMU directly, with slirp's hostfwd.
                _qemu_user_nic(root, options.name, interface, model, forwards, index)
                continue
            element = _sub(devices, "interface", type="user")
        elif network.get("multus") is not None:
            if interface.get("bridge") is None:
                raise UnsupportedSpecError(path, "a multus network needs the bridge binding here")
            network_name = (network["multus"] or {}).get("networkName", "")
            bridge = options.bridges.get(network_name)
            if not bridge:
                raise UnsupportedSpecError(
                    f"spec.networks[{network_index}].multus.networkName",
                    f"no host bridge for network {network_name!r} on this host",
                )
            element = _sub(devices, "interface", type="bridge")
            _sub(element, "source", bridge=bridge)
        else:
            raise UnsupportedSpecError(f"spec.networks[{network_index}]", "a network needs pod or multus")
        if interface.get("macAddress"):
            _sub(element, "mac", address=str(interface["macAddress"]).lower())
        _sub(element, "model", type=model)
        if interface.get("bootOrder") is None:
            # as KubeVirt does: no PXE option ROM unless the NIC boots (it costs seconds of firmware time)
            _sub(element, "rom", enabled="no")
        if interface.get("bootOrder") is not None:
            _sub(element, "boot", order=str(int(interface["bootOrder"])))
        _sub(element, "alias", name=f"ua-{name}")


QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
ET.register_namespace("qemu", QEMU_NS)
QEMU_DEVICE_MODELS = {
    "virtio": "virtio-net-pci",
    "e1000": "e1000",
    "e1000e": "e1000e",
    "rtl8139": "rtl8139",
    "ne2k_pci": "ne2k_pci",
    "pcnet": "pcnet",
}


def default_mac(domain_name: str, interface_name: str) -> str:
    """A stable locally administered MAC (QEMU's 52:54:00 prefix) for a NIC libvirt does not manage."""
    digest = hashlib.sha256(f"{domain_name}/{interface_name}".encode()).digest()
    return "52:54:00:" + ":".join(f"{byte:02x}" for byte in digest[:3])


def _qemu_user_nic(
    root: ET.Element,
    domain_name: str,
    interface: Mapping[str, Any],
    model: str,
    forwards: list[PortForward],
    index: int,
) -> None:
    commandline = root.find(f"{{{QEMU_NS}}}commandline")
    if commandline is None:
        commandline = ET.SubElement(root, f"{{{QEMU_NS}}}commandline")
    netdev_id = f"fwdnet{index}"
    hostfwd = ",".join(f"hostfwd={f.protocol}::{f.host_port}-:{f.guest_port}" for f in forwards)
    mac = str(interface.get("macAddress") or default_mac(domain_name, str(interface.get("name"))))
    # an explicit slot on the root bus: QEMU creates these before libvirt's devices, whose
    # addresses libvirt chose already (root ports from 0x01); libvirt leaves 0x10-0x17 free
    device = f"{QEMU_DEVICE_MODELS[model]},netdev={netdev_id},mac={mac.lower()},bus=pcie.0,addr={0x10 + index:#x}"
    if interface.get("bootOrder") is not None:
        device += f",bootindex={int(interface['bootOrder'])}"
    else:
        device += ",romfile="
    for arg in ("-netdev", f"user,id={netdev_id},{hostfwd}", "-device", device):
        ET.SubElement(commandline, f"{{{QEMU_NS}}}arg", {"value": arg})


def _forwards(interface: Mapping[str, Any], path: str, options: DomainOptions) -> list[PortForward]:
    if options.port_forwards is not None:
        return list(options.port_forwards.get(interface.get("name", ""), []))
    forwards = []
    for index, port in enumerate(interface.get("ports") or []):
        protocol = str(port.get("protocol") or "TCP").lower()
        if protocol not in ("tcp", "udp"):
            raise UnsupportedSpecError(f"{path}.ports[{index}].protocol", f"unknown protocol {protocol!r}")
        number = int(port["port"])
        forwards.append(PortForward(number, number, protocol))  # type: ignore[arg-type]
    return forwards


def _serial(devices: ET.Element, options: DomainOptions) -> None:
    serial = _sub(devices, "serial", type="pty")
    if options.console_log is not None:
        # virtlogd writes everything the guest prints, from the first byte, whoever is attached
        _sub(serial, "log", file=str(options.console_log), append="off")
    target = _sub(serial, "target", type="isa-serial", port="0")
    _sub(target, "model", name="isa-serial")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")


def _watchdog(devices: ET.Element, watchdog: Mapping[str, Any]) -> None:
    _unknown(watchdog, {"name", "i6300esb"}, "spec.domain.devices.watchdog")
    action = (watchdog.get("i6300esb") or {}).get("action") or "reset"
    actions = {"poweroff": "poweroff", "reset": "reset", "shutdown": "shutdown"}
    if action not in actions:
        raise UnsupportedSpecError("spec.domain.devices.watchdog.i6300esb.action", f"unknown action {action!r}")
    _sub(devices, "watchdog", model="i6300esb", action=actions[action])
