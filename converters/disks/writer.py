"""Where disk bytes go: a raw file, a directory standing for a mounted PVC (→ disk.img), or a
block device; qcow2 targets are written raw beside the target and converted by qemu-img.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import stat
import struct
import subprocess
from pathlib import Path

from converters.disks.sources import seek_data_ranges
from core import private
from core.errors import DiskError

PVC_IMAGE = "disk.img"  # the file KubeVirt/CDI expect in a filesystem-mode volume
BLKZEROOUT = 0x127F
WRITE_PIECE = 256 << 10


def state_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "migrator" / "disks"


class Target:
    def __init__(self, target: Path, target_format: str) -> None:
        if target_format not in ("raw", "qcow2"):
            raise DiskError(f"unknown target format {target_format!r} (use raw or qcow2)")
        target = Path(target)
        if target.is_dir():
            target = target / PVC_IMAGE
        self.path = target
        self.format = target_format
        self.is_block = target.exists() and stat.S_ISBLK(target.stat().st_mode)
        if self.is_block and target_format != "raw":
            raise DiskError(f"{target}: a block device takes raw images only")
        if not self.is_block and not target.parent.is_dir():
            raise DiskError(f"{target}: the target's folder does not exist")
        if self.is_block:
            key = hashlib.sha256(str(target.resolve()).encode()).hexdigest()[:16]
            self.state_path = state_dir() / f"{target.name}-{key}.transfer"
            self.data_path = target
        else:
            self.state_path = target.parent / f".{target.name}.transfer"
            self.data_path = target if target_format == "raw" else target.parent / f".{target.name}.part.raw"
        self.fd = -1

    # -- lifecycle -----------------------------------------------------------------
    def create(self, size: int) -> None:
        """Start over: an empty sparse file of ``size`` bytes (or the whole device)."""
        self.close()
        if self.is_block:
            self.fd = self._open(os.O_RDWR)
            dev_size = os.lseek(self.fd, 0, os.SEEK_END)
            if dev_size < size:
                raise DiskError(f"{self.path}: block device has {dev_size} bytes, the disk needs {size}")
            return
        self.fd = self._open(os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        try:
            os.ftruncate(self.fd, size)
        except OSError as exc:
            raise DiskError(f"{self.data_path}: cannot size the target: {exc.strerror}") from None

    def reopen(self, size: int) -> bool:
        """Open an existing partial target; False if it is not there or has the wrong size."""
        self.close()
        if not self.data_path.exists():
            return False
        self.fd = self._open(os.O_RDWR)
        if not self.is_block and os.fstat(self.fd).st_size != size:
            return False
        return True

    def _open(self, flags: int) -> int:
        try:
            return private.open_fd(self.data_path, flags | os.O_CLOEXEC)  # images are 0600: they hold a whole disk
        except OSError as exc:
            raise DiskError(f"{self.data_path}: cannot open the target: {exc.strerror}") from None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def remove(self) -> None:
        self.close()
        if not self.is_block:
            self.data_path.unlink(missing_ok=True)
            if self.format == "qcow2":
                self.path.unlink(missing_ok=True)

    # -- I/O -----------------------------------------------------------------------
    def write(self, offset: int, data: memoryview) -> None:
        # Moderate pieces: one huge write stalls in the kernel's dirty-page throttling here.
        done = 0
        try:
            while done < len(data):
                done += os.pwritev(self.fd, [data[done : done + WRITE_PIECE]], offset + done)
        except OSError as exc:
            if exc.errno == 28:
                raise DiskError(f"{self.data_path}: no space left on the target's filesystem") from None
            raise DiskError(f"{self.data_path}: write failed: {exc.strerror}") from None

    def zero(self, offset: int, length: int) -> None:
        """Make a range read as zeros. Fresh files already do; devices get BLKZEROOUT."""
        if self.is_block and length:
            fcntl.ioctl(self.fd, BLKZEROOUT, struct.pack("QQ", offset, length))

    def read_into(self, offset: int, out: memoryview) -> None:
        done = 0
        while done < len(out):
            n = os.preadv(self.fd, [out[done:]], offset + done)
            if n == 0:
                raise DiskError(f"{self.data_path}: target shorter than expected")
            done += n

    def data_ranges(self, start: int, end: int) -> list[tuple[int, int]]:
        if self.is_block:
            return [(start, end)]
        return seek_data_ranges(self.fd, start, end)

    def sync(self) -> None:
        os.fsync(self.fd)

    def free_bytes(self) -> int | None:
        if self.is_block:
            return None
        st = os.statvfs(self.data_path.parent)
        return st.f_bavail * st.f_frsize

    # -- end -----------------------------------------------------------------------
    def finalize(self, verify: bool) -> None:
        """qcow2: convert the raw part into the target and drop the part."""
        self.close()
        if self.format != "qcow2":
            return
        partial = self.path.with_name(f".{self.path.name}.tmp")
        _qemu_img(["convert", "-f", "raw", "-O", "qcow2", str(self.data_path), str(partial)], self.path)
        if verify:
            _qemu_img(["compare", "-f", "raw", "-F", "qcow2", str(self.data_path), str(partial)], self.path)
        private.restrict(partial)  # qemu-img created it with the umask's mode
        os.replace(partial, self.path)
        self.data_path.unlink(missing_ok=True)

    def identity(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        if self.is_block:
            return (0, 0)
        return st.st_size, st.st_mtime_ns


def _qemu_img(args: list[str], target: Path) -> None:
    result = subprocess.run(["qemu-img", *args], capture_output=True, text=True)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["failed"]
        raise DiskError(f"{target}: qemu-img {args[0]}: {lines[-1].removeprefix('qemu-img: ')}")
