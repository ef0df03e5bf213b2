"""Bootable raw disks made on image files only: no loop devices, no mounts.

BIOS: an MBR (sfdisk) with one active FAT16 partition holding syslinux (installed with the
mtools-based `syslinux`), its config, the kernel and the initramfs; syslinux's mbr.bin in the
first 440 bytes. EFI: a GPT with one EFI system partition holding systemd-boot as the
removable-media loader EFI/BOOT/BOOTX64.EFI, a loader entry, the kernel and the initramfs.
The kernel command line lives in a small text file on the FAT partition, so variants of one
base image differ by one `mcopy -o` of that file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from testbed.guestimage.packages import GuestImageError, run

DISK_BYTES = 64 * 1024 * 1024
PARTITION_OFFSET = 1024 * 1024  # first partition at sector 2048, as sfdisk aligns it
SYSLINUX_MBR = Path("/usr/lib/syslinux/mbr/mbr.bin")
SYSLINUX_CFG = "syslinux.cfg"
LOADER_ENTRY = "loader/entries/migrator.conf"
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"


def syslinux_cfg(cmdline: str) -> str:
    return (
        "SERIAL 0 115200\n"
        "DEFAULT migrator\n"
        "PROMPT 0\n"
        "TIMEOUT 0\n"
        "LABEL migrator\n"
        "  KERNEL /vmlinuz\n"
        "  INITRD /initrd.img\n"
        f"  APPEND {cmdline}\n"
    )


def loader_entry(cmdline: str) -> str:
    return f"title migrator test guest\nlinux /vmlinuz\ninitrd /initrd.img\noptions {cmdline}\n"


def config_path(firmware: str) -> str:
    """The file on the FAT partition that holds the kernel command line."""
    return SYSLINUX_CFG if firmware == "bios" else LOADER_ENTRY


def _partition_table(image: Path, script: str) -> None:
    run(["sfdisk", "--no-reread", "--no-tell-kernel", "-q", str(image)], input_bytes=script.encode())
    table = json.loads(run(["sfdisk", "--json", str(image)]))["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    start = int(table["partitions"][0]["start"]) * sector
    if start != PARTITION_OFFSET:
        raise GuestImageError(f"sfdisk put the partition at byte {start}, expected {PARTITION_OFFSET}")


def _partition_bytes(firmware: str) -> int:
    # a GPT keeps a backup header and table in the last 33 sectors
    return DISK_BYTES - PARTITION_OFFSET - (33 * 512 if firmware == "efi" else 0)


def _put(fat: Path, source: Path | str, dest: str, *, text: bool = False) -> None:
    if text:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as tmp:
            tmp.write(str(source))
        try:
            run(["mcopy", "-o", "-i", str(fat), tmp.name, f"::/{dest}"])
        finally:
            os.unlink(tmp.name)
    else:
        run(["mcopy", "-o", "-i", str(fat), str(source), f"::/{dest}"])


def _assemble(image: Path, fat: Path, boot_code: bytes | None) -> None:
    with image.open("r+b") as out, fat.open("rb") as part:
        out.seek(PARTITION_OFFSET)
        while chunk := part.read(1024 * 1024):
            if chunk.count(0) == len(chunk):
                out.seek(len(chunk), os.SEEK_CUR)  # keep the image sparse
            else:
                out.write(chunk)
        if boot_code is not None:
            out.seek(0)
            out.write(boot_code[:440])


def make_bios_disk(image: Path, vmlinuz: Path, initrd: Path, cmdline: str) -> None:
    if not SYSLINUX_MBR.exists():
        raise GuestImageError(f"{SYSLINUX_MBR} not found: install syslinux-common (`make deps`)")
    with tempfile.TemporaryDirectory(dir=image.parent) as tmp:
        fat = Path(tmp) / "fat.img"
        with fat.open("wb") as handle:
            handle.truncate(_partition_bytes("bios"))
        run(["mkfs.vfat", "-F", "16", "-n", "MIGRATOR", "-h", str(PARTITION_OFFSET // 512), str(fat)])
        _put(fat, vmlinuz, "vmlinuz")
        _put(fat, initrd, "initrd.img")
        _put(fat, syslinux_cfg(cmdline), SYSLINUX_CFG, text=True)
        run(["syslinux", "--install", str(fat)])
        with image.open("wb") as handle:
            handle.truncate(DISK_BYTES)
        _partition_table(image, f"label: dos\nstart={PARTITION_OFFSET // 512}, type=6, bootable\n")
        _assemble(image, fat, SYSLINUX_MBR.read_bytes())


def make_efi_disk(image: Path, vmlinuz: Path, initrd: Path, cmdline: str, loader_efi: Path) -> None:
    with tempfile.TemporaryDirectory(dir=image.parent) as tmp:
        fat = Path(tmp) / "esp.img"
        with fat.open("wb") as handle:
            handle.truncate(_partition_bytes("efi"))
        run(["mkfs.vfat", "-F", "32", "-s", "1", "-n", "ESP", "-h", str(PARTITION_OFFSET // 512), str(fat)])
        for directory in ("EFI", "EFI/BOOT", "loader", "loader/entries"):
            run(["mmd", "-i", str(fat), f"::/{directory}"])
        _put(fat, loader_efi, "EFI/BOOT/BOOTX64.EFI")
        _put(fat, "default migrator.conf\ntimeout 0\nconsole-mode keep\n", "loader/loader.conf", text=True)
        _put(fat, vmlinuz, "vmlinuz")
        _put(fat, initrd, "initrd.img")
        _put(fat, loader_entry(cmdline), LOADER_ENTRY, text=True)
        with image.open("wb") as handle:
            handle.truncate(DISK_BYTES)
        _partition_table(
            image,
            f"label: gpt\nstart={PARTITION_OFFSET // 512}, size={_partition_bytes('efi') // 512}, "
            f'type={ESP_TYPE}, name="EFI system partition"\n',
        )
        _assemble(image, fat, None)


def set_cmdline(image: Path, firmware: str, cmdline: str) -> None:
    """Rewrite the kernel command line of a built disk in place (one small file on its FAT partition)."""
    text = syslinux_cfg(cmdline) if firmware == "bios" else loader_entry(cmdline)
    _put(Path(f"{image}@@{PARTITION_OFFSET}"), text, config_path(firmware), text=True)


def read_cmdline_file(image: Path, firmware: str) -> str:
    return run(["mtype", "-i", f"{image}@@{PARTITION_OFFSET}", f"::/{config_path(firmware)}"])
