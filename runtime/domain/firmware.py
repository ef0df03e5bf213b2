"""Firmware: machine type, BIOS or EFI (secure boot, NVRAM), SMBIOS identity (KubeVirt's converter: os, firmware)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from runtime.domain.elements import sub, unknown
from runtime.domain.model import (
    OVMF_CODE,
    OVMF_CODE_SECBOOT,
    OVMF_VARS,
    OVMF_VARS_SECBOOT,
    DomainOptions,
    UnsupportedSpecError,
)

FIRMWARE_FIELDS = {"uuid", "serial", "bootloader"}


def identity(root: ET.Element, spec: Mapping[str, Any]) -> None:
    """``spec.domain.firmware.uuid``: the domain's UUID (what the guest reads from SMBIOS)."""
    unknown(spec, FIRMWARE_FIELDS, "spec.domain.firmware")
    if spec.get("uuid"):
        sub(root, "uuid", str(spec["uuid"]))


def sysinfo(root: ET.Element, spec: Mapping[str, Any]) -> None:
    """``spec.domain.firmware.serial``: the SMBIOS system serial (VMware's "VMware-42 ..." survives migration)."""
    if spec.get("serial"):
        info = sub(root, "sysinfo", type="smbios")
        system = sub(info, "system")
        sub(system, "entry", str(spec["serial"]), name="serial")
        if spec.get("uuid"):
            sub(system, "entry", str(spec["uuid"]), name="uuid")


def boot(root: ET.Element, domain_spec: Mapping[str, Any], firmware: Mapping[str, Any], options: DomainOptions) -> bool:
    """``<os>``: the q35 machine, BIOS or EFI (secure boot needs SMM: the caller adds it); True with secure boot."""
    machine = (domain_spec.get("machine") or {}).get("type") or "q35"
    if not (machine == "q35" or machine.startswith("pc-q35")):
        raise UnsupportedSpecError("spec.domain.machine.type", f"{machine!r}: only q35 machines are supported")
    os_element = sub(root, "os")
    sub(os_element, "type", "hvm", arch="x86_64", machine=machine)
    bootloader = firmware.get("bootloader") or {}
    unknown(bootloader, {"bios", "efi"}, "spec.domain.firmware.bootloader")
    secure_boot = False
    if bootloader.get("efi") is not None:
        efi = bootloader["efi"] or {}
        unknown(efi, {"secureBoot", "persistent"}, "spec.domain.firmware.bootloader.efi")
        # KubeVirt's default for an efi bootloader is secure boot on
        secure_boot = bool(efi.get("secureBoot", True))
        code, template = (OVMF_CODE_SECBOOT, OVMF_VARS_SECBOOT) if secure_boot else (OVMF_CODE, OVMF_VARS)
        sub(os_element, "loader", str(code), readonly="yes", type="pflash", secure="yes" if secure_boot else "no")
        nvram = sub(os_element, "nvram", template=str(template))
        if options.nvram_path is not None:
            nvram.text = str(options.nvram_path)
    else:
        bios = bootloader.get("bios") or {}
        unknown(bios, {"useSerial"}, "spec.domain.firmware.bootloader.bios")
        if bios.get("useSerial"):
            sub(os_element, "bios", useserial="yes")
    if firmware.get("serial"):
        sub(os_element, "smbios", mode="sysinfo")
    return secure_boot
