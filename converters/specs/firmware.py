"""Firmware: bootloader (BIOS/EFI, secure boot), SMBIOS identity, and the features that go with it."""

from __future__ import annotations

import uuid
from typing import Any

from core.inventory import VM, Firmware


def vmware_serial(bios_uuid: str) -> str:
    """The SMBIOS system serial VMware derives from the BIOS UUID, so the guest keeps seeing the same serial.

    "4231a8c1-...-..." → "VMware-42 31 a8 c1 .. .. .. ..-.. .. .. .. .. .. .. ..".
    """
    hex_bytes = uuid.UUID(bios_uuid).hex
    pairs = [hex_bytes[i : i + 2] for i in range(0, 32, 2)]
    return f"VMware-{' '.join(pairs[:8])}-{' '.join(pairs[8:])}"


def _valid_uuid(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def firmware(vm: VM) -> dict[str, Any]:
    if vm.firmware is Firmware.EFI:
        bootloader: dict[str, Any] = {"efi": {"secureBoot": bool(vm.secure_boot)}}
    else:
        bootloader = {"bios": {}}
    result: dict[str, Any] = {"bootloader": bootloader}
    bios_uuid = _valid_uuid(vm.bios_uuid)
    if bios_uuid:
        result["uuid"] = bios_uuid
        result["serial"] = vmware_serial(bios_uuid)
    return result


def features(vm: VM) -> dict[str, Any]:
    """Secure boot needs SMM (OVMF's secure-boot build refuses to run without it)."""
    if vm.firmware is Firmware.EFI and vm.secure_boot:
        return {"smm": {"enabled": True}}
    return {}
