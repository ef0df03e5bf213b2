"""The tiny real guest: built from Debian packages, booted with a bare QEMU, converted to VMDK and back."""

from __future__ import annotations

import filecmp
import subprocess
import time
from pathlib import Path

import pytest

from runtime.accel import probe_accelerator
from testbed.guestimage import (
    CRASH_LINE,
    DEFAULT_MARKER,
    END_OF_DEVICES_LINE,
    POWEROFF_LINE,
    SHUTDOWN_LINE,
    GuestImage,
    GuestImageError,
    build_guest,
    kernel_and_initrd,
    kernel_cmdline,
    to_vmdk,
)
from testbed.guestimage.disk import read_cmdline_file
from testbed.guestimage.qemu import BareGuest

MAC = "52:54:00:12:34:56"
E1000E_MAC = "52:54:00:ab:cd:ef"
BOOT_TIMEOUT = 120


@pytest.fixture(scope="module")
def accel() -> str:
    return probe_accelerator().kind


def _devices(guest: BareGuest) -> list[str]:
    assert guest.wait_for(END_OF_DEVICES_LINE, 20) is not None, guest.output
    return [line for line in guest.lines if line.startswith(("DISK ", "NIC "))]


@pytest.mark.slow
def test_bios_guest_reports_its_devices_and_shuts_down_on_the_power_button(tmp_path: Path, accel: str) -> None:
    image = build_guest(tmp_path)
    assert (image.firmware, image.behaviour, image.marker) == ("bios", "wait", DEFAULT_MARKER)
    sata = tmp_path / "sata.raw"
    sata.write_bytes(b"")
    subprocess.run(["truncate", "-s", "16M", str(sata)], check=True)
    extra = [
        # a SATA disk and an e1000e NIC, as a VM fresh from VMware may still have
        *("-drive", f"file={sata},if=none,id=sata0,format=raw", "-device", "ide-hd,drive=sata0,bus=ide.0"),
        *("-netdev", "user,id=n1", "-device", f"e1000e,netdev=n1,mac={E1000E_MAC},romfile="),
    ]
    # the accelerator the probe chose must really boot the guest
    with BareGuest(image, accel=accel, mac=MAC, extra_args=extra) as guest:
        assert guest.wait_for(DEFAULT_MARKER, BOOT_TIMEOUT) is not None, guest.output
        devices = _devices(guest)
        assert f"DISK vda {image.size_bytes}" in devices
        assert "DISK sda 16777216" in devices
        nics = sorted(line.split()[2] for line in devices if line.startswith("NIC "))
        assert nics == sorted([MAC, E1000E_MAC])
        assert f"NIC eth0 {MAC}" in devices or f"NIC eth1 {MAC}" in devices
        assert guest.wait_exit(2) is None  # "wait" stays up
        guest.powerdown()
        assert guest.wait_exit(30) == 0, guest.output
        assert SHUTDOWN_LINE in guest.lines


@pytest.mark.slow
def test_crashing_guest_panics_through_pvpanic(tmp_path: Path, accel: str) -> None:
    image = build_guest(tmp_path, behaviour="crash")
    with BareGuest(image, accel=accel) as guest:
        assert guest.wait_for(DEFAULT_MARKER, BOOT_TIMEOUT) is not None, guest.output
        # QEMU runs with `-action panic=exit-failure`: only a guest panic makes it exit 1
        assert guest.wait_exit(30) == 1, guest.output
        assert CRASH_LINE in guest.lines
        assert any("Kernel panic" in line for line in guest.lines)


@pytest.mark.slow
def test_efi_guest_with_its_own_marker_boots_through_ovmf_and_powers_off_by_itself(tmp_path: Path, accel: str) -> None:
    """One boot for two things: the UEFI disk, and a variant's own marker and behaviour (a BIOS variant's are
    booted by the cutover tests: tests/cutover's failing and ACPI-deaf guests)."""
    image = build_guest(tmp_path, firmware="efi", behaviour="poweroff", marker="CUSTOM-MARKER-42")
    gpt = subprocess.run(["sfdisk", "--dump", str(image.raw)], capture_output=True, text=True, check=True).stdout
    assert "label: gpt" in gpt and "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" in gpt
    with BareGuest(image, accel=accel) as guest:
        assert guest.wait_for("CUSTOM-MARKER-42", BOOT_TIMEOUT) is not None, guest.output
        assert DEFAULT_MARKER not in guest.lines
        assert f"DISK vda {image.size_bytes}" in _devices(guest)
        assert guest.wait_exit(30) == 0, guest.output
        assert POWEROFF_LINE in guest.lines


@pytest.mark.parametrize("subformat", ["monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse", "streamOptimized"])
def test_vmdk_round_trip_gives_back_the_same_disk(tmp_path: Path, subformat: str) -> None:
    image = build_guest(tmp_path / "raw")
    files = to_vmdk(image, tmp_path / "vmdk", subformat)
    assert all(path.exists() for path in files)
    descriptor = files[0]
    if subformat in ("monolithicFlat", "twoGbMaxExtentSparse"):
        assert len(files) >= 2
        text = descriptor.read_text()
        assert f'createType="{subformat}"' in text and 'ddb.adapterType = "lsilogic"' in text
    info = subprocess.run(["qemu-img", "info", "--output=json", str(descriptor)], capture_output=True, text=True)
    assert '"format": "vmdk"' in info.stdout
    back = tmp_path / "back.raw"
    subprocess.run(["qemu-img", "convert", "-f", "vmdk", "-O", "raw", str(descriptor), str(back)], check=True)
    assert filecmp.cmp(back, image.raw, shallow=False)


def test_variants_share_one_base_and_differ_only_in_the_command_line(tmp_path: Path) -> None:
    first = build_guest(tmp_path / "a", behaviour="poweroff-after=3", marker="ONE")
    second = build_guest(tmp_path / "b", behaviour="wait", marker="TWO")
    assert isinstance(first, GuestImage) and first.size_bytes == second.size_bytes == 64 * 1024 * 1024
    assert "migrator.behaviour=poweroff-after=3 migrator.marker=ONE" in read_cmdline_file(first.raw, "bios")
    assert "migrator.behaviour=wait migrator.marker=TWO" in read_cmdline_file(second.raw, "bios")
    differing = _differing_mib(first.raw, second.raw)
    assert 0 < len(differing) <= 2, differing  # the syslinux.cfg cluster, nothing else


def _differing_mib(a: Path, b: Path) -> list[int]:
    out: list[int] = []
    with a.open("rb") as fa, b.open("rb") as fb:
        index = 0
        while chunk := fa.read(1 << 20):
            if chunk != fb.read(1 << 20):
                out.append(index)
            index += 1
    return out


@pytest.mark.parametrize(
    "kwargs",
    [{"behaviour": "dance"}, {"marker": "has space"}, {"firmware": "coreboot"}, {"behaviour": "poweroff-after=x"}],
)
def test_bad_variant_is_a_one_line_error(tmp_path: Path, kwargs: dict[str, str]) -> None:
    with pytest.raises(GuestImageError) as info:
        build_guest(tmp_path, **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_bare_kernel_boot_powers_off_after_the_given_seconds(tmp_path: Path, accel: str) -> None:
    vmlinuz, initrd = kernel_and_initrd(tmp_path)
    assert vmlinuz.read_bytes()[0x202:0x206] == b"HdrS"  # a bzImage
    cmdline = kernel_cmdline("poweroff-after=2", "BARE-KERNEL")
    image = build_guest(tmp_path / "disk")  # a data disk only: the kernel comes from -kernel
    extra = ["-kernel", str(vmlinuz), "-initrd", str(initrd), "-append", cmdline]
    with BareGuest(image, accel=accel, extra_args=extra) as guest:
        assert guest.wait_for("BARE-KERNEL", BOOT_TIMEOUT) is not None, guest.output
        marker_at = time.monotonic()
        assert guest.wait_exit(30) == 0, guest.output
        assert time.monotonic() - marker_at >= 1.0  # it waited (2 s) before powering off
        assert POWEROFF_LINE in guest.lines
