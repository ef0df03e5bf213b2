"""Network: interfaces on the pod network (user-mode, forwarded ports) or a host bridge (KubeVirt's converter:
interfaces)."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from runtime.domain.elements import sub, unknown
from runtime.domain.model import DomainOptions, PortForward, UnsupportedSpecError

INTERFACE_FIELDS = {"name", "model", "macAddress", "masquerade", "bridge", "slirp", "ports", "bootOrder"}
NIC_MODELS = {"virtio", "e1000", "e1000e", "rtl8139", "ne2k_pci", "pcnet"}


def interfaces(
    root: ET.Element,
    devices: ET.Element,
    spec: Mapping[str, Any],
    devices_spec: Mapping[str, Any],
    options: DomainOptions,
) -> None:
    if not devices_spec.get("interfaces") and not spec.get("networks"):
        if devices_spec.get("autoattachPodInterface", True):
            # KubeVirt gives a VMI without networks one pod-network NIC
            element = sub(devices, "interface", type="user")
            sub(element, "model", type="virtio")
            sub(element, "rom", enabled="no")
            sub(element, "alias", name="ua-default")
        return
    networks = {}
    for index, network in enumerate(spec.get("networks") or []):
        unknown(network, {"name", "pod", "multus"}, f"spec.networks[{index}]")
        networks[network.get("name")] = (index, network)
    for index, interface in enumerate(devices_spec.get("interfaces") or []):
        path = f"spec.domain.devices.interfaces[{index}]"
        for binding in ("sriov", "macvtap", "passt"):
            if interface.get(binding) is not None:
                raise UnsupportedSpecError(f"{path}.{binding}", f"the {binding} binding is not supported")
        unknown(interface, INTERFACE_FIELDS, path)
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
            element = sub(devices, "interface", type="user")
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
            element = sub(devices, "interface", type="bridge")
            sub(element, "source", bridge=bridge)
        else:
            raise UnsupportedSpecError(f"spec.networks[{network_index}]", "a network needs pod or multus")
        if interface.get("macAddress"):
            sub(element, "mac", address=str(interface["macAddress"]).lower())
        sub(element, "model", type=model)
        if interface.get("bootOrder") is None:
            # as KubeVirt does: no PXE option ROM unless the NIC boots (it costs seconds of firmware time)
            sub(element, "rom", enabled="no")
        if interface.get("bootOrder") is not None:
            sub(element, "boot", order=str(int(interface["bootOrder"])))
        sub(element, "alias", name=f"ua-{name}")


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
