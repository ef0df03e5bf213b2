"""The guest's kernel and busybox initramfs, made from the Debian kernel package.

The kernel .deb ships no modules.dep (dpkg's postinst runs depmod), so `depmod -b` runs on
the unpacked tree; the wanted drivers and everything they depend on go into the initramfs
with a `load-order` file (dependencies first) that the guest's /init feeds to insmod.

The cpio archive is written here rather than with the cpio tool: /dev/console must be a
character device in it, which the tool could only copy from a node made with mknod (root).
"""

from __future__ import annotations

import gzip
import io
import lzma
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from testbed.guestimage.packages import GuestImageError, run

INIT_SCRIPT = Path(__file__).with_name("init.sh")
BUSYBOX = Path("/bin/busybox")

# Drivers for the disks and NICs a migrated VM may have (virtio after conversion; SATA/IDE,
# SCSI, e1000/e1000e, vmxnet3 and pvscsi as VMware had them), the ACPI power button and
# input events for acpid, and pvpanic so that a crash is visible to the hypervisor.
WANTED_MODULES = (
    "virtio_pci",
    "virtio_blk",
    "virtio_scsi",
    "virtio_net",
    "crct10dif_generic",
    "crc64_rocksoft_generic",
    "sd_mod",
    "sr_mod",
    "ahci",
    "ata_piix",
    "e1000",
    "e1000e",
    "vmxnet3",
    "vmw_pvscsi",
    "button",
    "evdev",
    "pvpanic-mmio",
    "pvpanic-pci",
)


@dataclass(frozen=True)
class KernelTree:
    release: str  # uname -r
    vmlinuz: Path
    modules_dir: Path  # lib/modules/<release> with modules.dep


def unpacked_kernel(root: Path) -> KernelTree:
    """Find the kernel and its module tree in an unpacked linux-image .deb, running depmod on it."""
    images = sorted((root / "boot").glob("vmlinuz-*"))
    if not images:
        raise GuestImageError(f"no boot/vmlinuz-* in the kernel package unpacked at {root}")
    release = images[0].name.removeprefix("vmlinuz-")
    modules_dir = root / "lib" / "modules" / release
    if not modules_dir.is_dir():
        raise GuestImageError(f"no lib/modules/{release} in the kernel package")
    run(["depmod", "-b", str(root), release])
    return KernelTree(release, images[0], modules_dir)


def _module_name(path: str) -> str:
    name = Path(path).name
    for suffix in (".ko", ".ko.xz", ".ko.zst", ".ko.gz"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name.replace("-", "_")


def load_order(modules_dep: Path, wanted: tuple[str, ...] = WANTED_MODULES) -> list[str]:
    """Relative module paths to insmod, each after everything it depends on; unknown names are skipped."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in modules_dep.read_text().splitlines():
        if ":" not in line:
            continue
        module, _, rest = line.partition(":")
        deps[module] = rest.split()
        by_name[_module_name(module)] = module
    order: list[str] = []

    def visit(module: str) -> None:
        if module in order:
            return
        # modules.dep lists the full closure, deepest last: load those first
        for dep in reversed(deps.get(module, [])):
            visit(dep)
        order.append(module)

    for name in wanted:
        module = by_name.get(name.replace("-", "_"))
        if module is not None:
            visit(module)
    return order


def _decompressed(source: Path) -> tuple[str, bytes]:
    """(name, content) of a module, decompressed for busybox insmod if the package compresses them."""
    data = source.read_bytes()
    name = source.name
    if name.endswith(".ko.xz"):
        return name[:-3], lzma.decompress(data)
    if name.endswith(".ko.gz"):
        return name[:-3], gzip.decompress(data)
    if name.endswith(".ko.zst"):
        out = run_bytes(["zstd", "-dc", str(source)])
        return name[:-4], out
    return name, data


def run_bytes(cmd: list[str]) -> bytes:
    try:
        return subprocess.run(cmd, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise GuestImageError(f"{cmd[0]} failed on {cmd[-1]}") from exc


class CpioNewc:
    """A minimal writer of the kernel's initramfs format (cpio "newc", see Documentation/driver-api/early-userspace)."""

    def __init__(self) -> None:
        self._out = io.BytesIO()
        self._ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        name_bytes = name.encode() + b"\0"
        fields = [
            self._ino,
            mode,
            0,  # uid
            0,  # gid
            1,  # nlink
            0,  # mtime: reproducible archives
            len(data),
            0,  # devmajor
            0,  # devminor
            rdev[0],
            rdev[1],
            len(name_bytes),
            0,  # check
        ]
        self._ino += 1
        header = b"070701" + b"".join(f"{value:08x}".encode() for value in fields)
        self._out.write(header + name_bytes)
        self._pad()
        self._out.write(data)
        self._pad()

    def _pad(self) -> None:
        self._out.write(b"\0" * (-self._out.tell() % 4))

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._entry(name, stat.S_IFCHR | mode, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self._out.getvalue()


def build_initramfs(kernel: KernelTree, dest: Path) -> None:
    """Write a gzip-compressed initramfs: busybox, /init, the wanted modules and their load order."""
    if not BUSYBOX.exists():
        raise GuestImageError(f"{BUSYBOX} not found: install busybox-static (`make deps`)")
    order = load_order(kernel.modules_dir / "modules.dep")
    if not any(_module_name(m) == "virtio_blk" for m in order):
        raise GuestImageError("the kernel package has no virtio_blk module")
    archive = CpioNewc()
    for directory in ("bin", "dev", "etc", "lib", "lib/modules", f"lib/modules/{kernel.release}", "proc", "sys"):
        archive.directory(directory)
    archive.char_device("dev/console", 5, 1)
    archive.char_device("dev/null", 1, 3, 0o666)
    archive.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    archive.symlink("bin/sh", "busybox")
    archive.file("init", INIT_SCRIPT.read_bytes(), 0o755)
    names: list[str] = []
    for module in order:
        name, data = _decompressed(kernel.modules_dir / module)
        archive.file(f"lib/modules/{kernel.release}/{name}", data)
        names.append(name)
    archive.file(f"lib/modules/{kernel.release}/load-order", ("\n".join(names) + "\n").encode())
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as tmp:
        tmp.write(gzip.compress(archive.finish(), compresslevel=6, mtime=0))
    Path(tmp.name).chmod(0o644)
    Path(tmp.name).replace(dest)


def install_kernel(kernel: KernelTree, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(kernel.vmlinuz, dest)
