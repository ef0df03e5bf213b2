"""Build the tiny real test guest once per machine, and cheap variants of it.

The expensive parts (the downloaded .debs, the kernel and initramfs, the base disks) are
cached under `cache_dir()/guest/<key>/`, the key hashing the package versions and this
package's own source; a variant (behaviour, marker) is a sparse copy of a base disk whose
kernel command line is rewritten with mtools: well under a second.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.paths import cache_dir
from testbed.guestimage import disk, initramfs, packages
from testbed.guestimage.packages import GuestImageError

DEFAULT_MARKER = "MIGRATOR-GUEST-READY"
FIRMWARES = ("bios", "efi")
BEHAVIOUR_PATTERN = re.compile(r"^(wait|ignore-acpi|poweroff|crash|poweroff-after=[0-9]{1,5})$")
MARKER_PATTERN = re.compile(r"^[A-Za-z0-9._:+-]{1,80}$")
SYSTEMD_BOOT_PACKAGE = "systemd-boot-efi"
SYSTEMD_BOOT_EFI = "usr/lib/systemd/boot/efi/systemd-bootx64.efi"
# Lines the guest prints besides the marker (see init.sh).
SHUTDOWN_LINE = "MIGRATOR-GUEST-SHUTDOWN"
POWEROFF_LINE = "MIGRATOR-GUEST-POWEROFF"
CRASH_LINE = "MIGRATOR-GUEST-CRASH"
END_OF_DEVICES_LINE = "END-OF-DEVICES"


@dataclass(frozen=True)
class GuestImage:
    raw: Path
    firmware: str
    behaviour: str
    marker: str
    size_bytes: int


def guest_cache_dir() -> Path:
    return cache_dir() / "guest"


def kernel_cmdline(behaviour: str = "wait", marker: str = DEFAULT_MARKER) -> str:
    """The guest's kernel command line: serial console, quiet, halt on panic, and what to do."""
    _validate(behaviour, marker)
    return (
        "console=ttyS0,115200 quiet loglevel=3 panic=0 scsi_mod.scan=sync "
        f"migrator.behaviour={behaviour} migrator.marker={marker}"
    )


def _validate(behaviour: str, marker: str, firmware: str = "bios") -> None:
    if firmware not in FIRMWARES:
        raise GuestImageError(f"unknown firmware {firmware!r}: expected one of {', '.join(FIRMWARES)}")
    if not BEHAVIOUR_PATTERN.match(behaviour):
        raise GuestImageError(
            f"unknown guest behaviour {behaviour!r}: "
            "expected wait, ignore-acpi, poweroff, crash or poweroff-after=SECONDS"
        )
    if not MARKER_PATTERN.match(marker):
        raise GuestImageError(f"bad marker {marker!r}: letters, digits and ._:+- only, at most 80")


def _source_hash() -> str:
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for path in sorted([*here.glob("*.py"), *here.glob("*.sh")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class _Inputs:
    kernel: tuple[str, str]
    busybox: str
    syslinux: str

    @property
    def key(self) -> str:
        text = "|".join([*self.kernel, self.busybox, self.syslinux, _source_hash()])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@functools.cache
def _inputs() -> _Inputs:
    """What the build depends on; asked once per process (apt-cache takes most of a second)."""
    return _Inputs(
        kernel=packages.kernel_package(),
        busybox=packages.installed_version("busybox-static"),
        syslinux=packages.installed_version("syslinux"),
    )


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialise builders (several test processes may build at once)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build_dir() -> Path:
    return guest_cache_dir() / _inputs().key


def _ensure_kernel(build: Path) -> tuple[Path, Path]:
    vmlinuz, initrd = build / "vmlinuz", build / "initrd.img"
    if vmlinuz.exists() and initrd.exists():
        return vmlinuz, initrd
    name, version = _inputs().kernel
    deb = packages.download(name, version, guest_cache_dir() / "debs")
    with tempfile.TemporaryDirectory(dir=guest_cache_dir(), prefix="unpack-") as tmp:
        packages.extract(deb, Path(tmp))
        tree = initramfs.unpacked_kernel(Path(tmp))
        initramfs.build_initramfs(tree, initrd)
        initramfs.install_kernel(tree, build / "vmlinuz.tmp")
        (build / "vmlinuz.tmp").replace(vmlinuz)
    return vmlinuz, initrd


def _systemd_boot(build: Path) -> Path:
    version = packages.candidate_version(SYSTEMD_BOOT_PACKAGE)
    target = build / f"systemd-bootx64-{version.replace(':', '_')}.efi"
    if target.exists():
        return target
    deb = packages.download(SYSTEMD_BOOT_PACKAGE, version, guest_cache_dir() / "debs")
    with tempfile.TemporaryDirectory(dir=guest_cache_dir(), prefix="unpack-") as tmp:
        packages.extract(deb, Path(tmp))
        source = Path(tmp) / SYSTEMD_BOOT_EFI
        if not source.exists():
            raise GuestImageError(f"{SYSTEMD_BOOT_PACKAGE} {version} has no {SYSTEMD_BOOT_EFI}")
        shutil.copyfile(source, target)
    return target


def _base_image(firmware: str) -> tuple[Path, Path]:
    """(build dir, base disk) for a firmware, building what is missing."""
    build = _build_dir()
    base = build / f"base-{firmware}.raw"
    if base.exists():
        return build, base
    with _locked(guest_cache_dir()):
        if base.exists():
            return build, base
        build.mkdir(parents=True, exist_ok=True)
        vmlinuz, initrd = _ensure_kernel(build)
        partial = build / f"base-{firmware}.raw.partial"
        partial.unlink(missing_ok=True)
        if firmware == "bios":
            disk.make_bios_disk(partial, vmlinuz, initrd, kernel_cmdline())
        else:
            disk.make_efi_disk(partial, vmlinuz, initrd, kernel_cmdline(), _systemd_boot(build))
        partial.replace(base)
    return build, base


def _sparse_copy(source: Path, dest: Path) -> None:
    try:
        subprocess.run(
            ["cp", "--sparse=always", "--reflink=auto", str(source), str(dest)], check=True, capture_output=True
        )
    except (OSError, subprocess.CalledProcessError):
        shutil.copyfile(source, dest)


def build_guest(
    workdir: Path | None = None,
    *,
    firmware: str = "bios",
    behaviour: str = "wait",
    marker: str = DEFAULT_MARKER,
) -> GuestImage:
    """A raw bootable disk of the test guest in `workdir` (default: the cache), built once per machine.

    The guest prints `marker`, `DISK <name> <bytes>` and `NIC <ifname> <mac>` lines and
    `END-OF-DEVICES` on ttyS0, then: `wait` until the ACPI power button (prints
    MIGRATOR-GUEST-SHUTDOWN, powers off); `ignore-acpi` waits and ignores that button (only a
    destroy stops it); `poweroff` after ~1 s; `poweroff-after=N` after N
    seconds; `crash` panics (a pvpanic device reports it; without one the guest halts).
    """
    _validate(behaviour, marker, firmware)
    build, base = _base_image(firmware)
    directory = Path(workdir) if workdir is not None else build / "variants"
    directory.mkdir(parents=True, exist_ok=True)
    slug = f"{behaviour}-{marker}".replace("=", "-")
    dest = directory / f"guest-{firmware}-{slug}.raw"
    # a fresh inode replaces the file: a QEMU still reading an older copy keeps its own
    partial = directory / f".{dest.name}.{_unique()}.partial"
    try:
        _sparse_copy(base, partial)
        disk.set_cmdline(partial, firmware, kernel_cmdline(behaviour, marker))
        partial.replace(dest)
    finally:
        partial.unlink(missing_ok=True)
    return GuestImage(dest, firmware, behaviour, marker, dest.stat().st_size)


def _unique() -> str:
    return uuid.uuid4().hex[:12]


def kernel_and_initrd(workdir: Path | None = None) -> tuple[Path, Path]:
    """The guest's kernel and initramfs (for a bare `-kernel/-initrd` boot; pass kernel_cmdline() as -append)."""
    build = _build_dir()
    with _locked(guest_cache_dir()):
        build.mkdir(parents=True, exist_ok=True)
        vmlinuz, initrd = _ensure_kernel(build)
    if workdir is None:
        return vmlinuz, initrd
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(vmlinuz, workdir / "vmlinuz")
    shutil.copyfile(initrd, workdir / "initrd.img")
    return workdir / "vmlinuz", workdir / "initrd.img"
