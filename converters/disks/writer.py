"""Where disk bytes go: a raw file, a directory standing for a mounted PVC (→ disk.img), or a
block device; qcow2 targets are written raw beside the target and converted by qemu-img.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import mmap
import os
import stat
import struct
import threading
from pathlib import Path

from converters.disks.sources import seek_data_ranges
from core import private
from core.errors import DiskError

PVC_IMAGE = "disk.img"  # the file KubeVirt/CDI expect in a filesystem-mode volume
BLKZEROOUT = 0x127F
WRITE_PIECE = 256 << 10
FALLOC_PUNCH_HOLE = 0x02 | 0x01  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
DIRECT_ALIGN = 4096  # O_DIRECT: offsets, lengths and buffers aligned to the logical block (≤ 4 KiB)


@functools.cache
def _fallocate():  # ctypes (10 ms to import) only once a reused target needs a hole punched
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
    return libc.fallocate, ctypes.get_errno


def state_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "migrator" / "disks"


def aligned_buffer(size: int) -> mmap.mmap:
    """A page-aligned buffer (anonymous mapping), as O_DIRECT reads need."""
    return mmap.mmap(-1, max(size, DIRECT_ALIGN))


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
            import hashlib

            key = hashlib.sha256(str(target.resolve()).encode()).hexdigest()[:16]
            self.state_path = state_dir() / f"{target.name}-{key}.transfer"
            self.data_path = target
        else:
            self.state_path = target.parent / f".{target.name}.transfer"
            self.data_path = target if target_format == "raw" else target.parent / f".{target.name}.part.raw"
        self.fd = -1
        # One write at a time into a file: the filesystem takes them one at a time anyway (ext4's
        # inode lock), and a second writer waiting for that lock spins in the kernel, burning the
        # core that the first writer's digest of its next piece needs (20% of a local copy's CPU).
        # A block device takes concurrent writes.
        self._writing: threading.Lock | contextlib.nullcontext[None] = (
            contextlib.nullcontext() if self.is_block else threading.Lock()
        )

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
                with self._writing:
                    done += os.pwritev(self.fd, [data[done : done + WRITE_PIECE]], offset + done)
        except OSError as exc:
            if exc.errno == 28:
                raise DiskError(f"{self.data_path}: no space left on the target's filesystem") from None
            raise DiskError(f"{self.data_path}: write failed: {exc.strerror}") from None

    @property
    def is_file(self) -> bool:
        """A regular file the kernel can copy into (copy_file_range) and punch holes in."""
        return not self.is_block

    def zero(self, offset: int, length: int) -> None:
        """Make a range read as zeros on a device (BLKZEROOUT). Fresh files already do: see ``clear``."""
        if self.is_block and length:
            fcntl.ioctl(self.fd, BLKZEROOUT, struct.pack("QQ", offset, length))

    def clear(self, offset: int, length: int) -> None:
        """Make a range of a reused target read as zeros before its chunk is written again.

        Files get a punched hole (they stay sparse); devices are zeroed per gap as they are written."""
        if self.is_block or not length:
            return
        fallocate, get_errno = _fallocate()
        if fallocate(self.fd, FALLOC_PUNCH_HOLE, offset, length) == 0:
            return
        code = get_errno()
        if code not in (errno.EOPNOTSUPP, errno.ENOSYS):
            raise DiskError(f"{self.data_path}: cannot clear a range: {os.strerror(code)}")
        zeros = bytes(min(length, 1 << 20))  # a filesystem without holes: write the zeros
        for pos in range(offset, offset + length, len(zeros)):
            self.write(pos, memoryview(zeros)[: min(len(zeros), offset + length - pos)])

    def copy_from(self, src_fd: int, src_offset: int, offset: int, length: int) -> None:
        """Let the kernel move ``length`` bytes from another file (copy_file_range: no copy through us)."""
        done = 0
        try:
            while done < length:
                with self._writing:
                    n = os.copy_file_range(src_fd, self.fd, length - done, src_offset + done, offset + done)
                if n == 0:
                    raise DiskError(f"{self.data_path}: source ended while copying at byte {src_offset + done}")
                done += n
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise DiskError(f"{self.data_path}: no space left on the target's filesystem") from None
            raise DiskError(f"{self.data_path}: copy failed: {exc.strerror}") from None

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

    def storage_reader(self) -> StorageReader:
        """A reader that bypasses the page cache (see StorageReader); call after ``sync``."""
        return StorageReader(self)

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


class StorageReader:
    """Reads a target from its storage, not from the page cache: O_DIRECT where the filesystem
    takes it, else the cached pages are dropped first (posix_fadvise DONTNEED, after fsync)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.direct = True
        try:
            self.fd = os.open(target.data_path, os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise DiskError(f"{target.data_path}: cannot open the target to verify: {exc.strerror}") from None
            self.direct = False  # tmpfs and a few others refuse O_DIRECT
            self.fd = os.open(target.data_path, os.O_RDONLY | os.O_CLOEXEC)
            os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)

    def read_into(self, offset: int, out: memoryview) -> int:
        """Fill ``out`` from ``offset`` (both aligned to DIRECT_ALIGN); returns bytes read (short at the end)."""
        done = 0
        while done < len(out):
            n = os.preadv(self.fd, [out[done:]], offset + done)
            if n == 0:
                break
            done += n
        return done

    def close(self) -> None:
        os.close(self.fd)


def _qemu_img(args: list[str], target: Path) -> None:
    import subprocess  # only qemu-img needs it (4 ms of start-up)

    result = subprocess.run(["qemu-img", *args], capture_output=True, text=True)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["failed"]
        raise DiskError(f"{target}: qemu-img {args[0]}: {lines[-1].removeprefix('qemu-img: ')}")
