"""Files and folders only their owner can read: disk images, state, logs and output directories.

A disk image holds everything the VM had on disk, and state and logs say where it went: they
are created ``0600`` (``IMAGE_GROUP_MODE`` 0640 where a group, such as the hypervisor's, must
read an image), and the folders we create for them ``0700``. The mode is set explicitly, not
left to the umask, and a file that already exists with a wider mode is narrowed when rewritten.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
IMAGE_GROUP_MODE = 0o640
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) with the leaf ``0700``; an existing folder we made is narrowed.

    Parents that already exist are left as they are: they may be the user's own ``/tmp`` or home.
    """
    existed = path.is_dir()
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    if not existed:
        os.chmod(path, DIR_MODE)  # mkdir's mode is masked by the umask; never widened by it either
    return path


def open_fd(path: Path, flags: int, mode: int = FILE_MODE) -> int:
    """``os.open`` creating with ``mode``; a regular file we open for writing is narrowed to ``mode`` too."""
    fd = os.open(path, flags, mode)
    try:
        if flags & (os.O_WRONLY | os.O_RDWR) and _is_regular(fd):
            os.fchmod(fd, mode)
    except OSError:
        os.close(fd)
        raise
    return fd


def restrict(path: Path, mode: int = FILE_MODE) -> None:
    """Narrow an existing regular file (one made by a child process, such as qemu-img) to ``mode``."""
    os.chmod(path, mode)


def write_private(path: Path, data: bytes | str) -> None:
    """Write a whole file created (or narrowed to) ``0600``."""
    payload = data.encode() if isinstance(data, str) else data
    fd = open_fd(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC)
    with os.fdopen(fd, "wb") as handle:
        handle.write(payload)


def _is_regular(fd: int) -> bool:
    import stat

    return stat.S_ISREG(os.fstat(fd).st_mode)
