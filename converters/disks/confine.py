"""Confinement of the paths a descriptor names (VMDK extents and parents, and any other such path).

A descriptor may name only files in its own folder: ``confined`` refuses absolute paths and
``..`` by their text, then resolves symlinks and refuses a file that lands outside the
folder, with one line naming the path. Public: the other descriptor readers (OVF, VMX, OVA)
may use it too.
"""

from __future__ import annotations

from pathlib import Path

from converters.disks.vmdk import check_extent_path
from core.errors import DiskError


def confined(folder: Path, name: str, *, label: str, what: str = "extent") -> Path:
    """``folder / name``, refused unless it stays inside ``folder`` once symlinks are resolved.

    ``label`` starts the error line (the descriptor's name); ``what`` says what ``name`` is."""
    check_extent_path(name, name=label)
    path = folder / name
    root = folder.resolve()
    real = path.resolve()
    if not real.is_relative_to(root):
        raise DiskError(f"{label}: {what} {name!r} resolves to {real}, outside the disk's folder {root}: refused")
    return path
