"""Other devices: TPM, RNG, watchdog, input devices, the USB controller, the balloon and the panic device
(KubeVirt's converter: tpm, rng, watchdog, inputs, memballoon)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from runtime.domain.elements import sub, unknown
from runtime.domain.model import UnsupportedSpecError


def others(devices: ET.Element, devices_spec: Mapping[str, Any]) -> None:
    """What ``spec.domain.devices`` asks for besides disks, NICs and the console; after those (USB needs them)."""
    if devices_spec.get("tpm") is not None:
        tpm_spec = devices_spec["tpm"] or {}
        unknown(tpm_spec, {"persistent", "enabled"}, "spec.domain.devices.tpm")
        if tpm_spec.get("enabled", True):
            tpm = sub(devices, "tpm", model="tpm-crb")
            backend = sub(tpm, "backend", type="emulator", version="2.0")
            if tpm_spec.get("persistent"):
                backend.set("persistent_state", "yes")
    if devices_spec.get("rng") is not None:
        rng = sub(devices, "rng", model="virtio")
        sub(rng, "backend", "/dev/urandom", model="random")
    if devices_spec.get("watchdog"):
        watchdog(devices, devices_spec["watchdog"])
    for index, device in enumerate(devices_spec.get("inputs") or []):
        path = f"spec.domain.devices.inputs[{index}]"
        unknown(device, {"name", "type", "bus"}, path)
        if device.get("type", "tablet") != "tablet" or device.get("bus", "usb") not in ("usb", "virtio"):
            raise UnsupportedSpecError(path, "only a usb or virtio tablet is supported")
        sub(devices, "input", type="tablet", bus=device.get("bus", "usb"))
    if devices.find("disk/target[@bus='usb']") is None and devices.find("input[@bus='usb']") is None:
        # as KubeVirt does: no USB controller unless a device needs one (SeaBIOS spends ~1 s probing it)
        sub(devices, "controller", type="usb", index="0", model="none")
    sub(devices, "memballoon", model="virtio" if devices_spec.get("autoattachMemBalloon", True) else "none")
    # a guest kernel panic reaches libvirt (pvpanic on the ISA port 0x505) and stops the domain
    sub(devices, "panic", model="isa")


def watchdog(devices: ET.Element, watchdog: Mapping[str, Any]) -> None:
    unknown(watchdog, {"name", "i6300esb"}, "spec.domain.devices.watchdog")
    action = (watchdog.get("i6300esb") or {}).get("action") or "reset"
    actions = {"poweroff": "poweroff", "reset": "reset", "shutdown": "shutdown"}
    if action not in actions:
        raise UnsupportedSpecError("spec.domain.devices.watchdog.i6300esb.action", f"unknown action {action!r}")
    sub(devices, "watchdog", model="i6300esb", action=actions[action])
