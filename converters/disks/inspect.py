"""What convert will make of a local disk, known before any byte is copied (plan time).

``inspect_local`` reads the descriptor with the one VMDK parser (vmdk.py) and opens the disk
as convert does (extents, their confinement, sparse headers, grain tables, parents), so a
disk that convert would refuse is known at plan time, with the very line convert would print.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from converters.disks.image import local_descriptor, open_local
from converters.disks.vmdk import SECTOR, ZERO_TYPES, ConfinementError, Extent
from core.errors import DiskError


@dataclass(frozen=True)
class DiskFacts:
    path: Path
    virtual_size: int  # 0 when not even the descriptor could be read
    create_type: str | None  # VMDK createType; None for raw or qcow2 (or an unreadable descriptor)
    extents: tuple[Extent, ...] = ()
    data_files: tuple[Path, ...] = ()  # the files holding the bytes (the file itself when embedded)
    values: dict[str, str] = field(default_factory=dict)  # descriptor keys, ddb.* included
    parent: str | None = None  # parentFileNameHint
    problem: str | None = None  # the one line convert would refuse the disk with


def inspect_local(path: Path) -> DiskFacts:
    """Facts of a local disk image, and the reason convert would refuse it (``problem``), if any.

    A descriptor naming a file outside its folder is hostile input, not a disk to plan: it raises
    ConfinementError (one line naming the path). Other DiskErrors only when the file cannot be opened."""
    path = Path(path)
    try:
        descriptor, header = local_descriptor(path)
    except ConfinementError:
        raise
    except DiskError as exc:
        if not path.is_file():
            raise
        return DiskFacts(path, 0, None, problem=exc.message)
    size = 0
    if descriptor is not None:
        size = descriptor.virtual_size
    if header is not None:
        size = header.capacity * SECTOR
    problem = None
    try:
        disk = open_local(path)
    except ConfinementError:
        raise
    except DiskError as exc:
        problem = exc.message
    else:
        size = disk.size
        disk.close()
    if descriptor is None:
        return DiskFacts(path, size, None, data_files=(path,), problem=problem)
    if header is not None:
        files: tuple[Path, ...] = (path,)
    else:
        files = tuple(path.parent / e.filename for e in descriptor.extents if e.filename and e.type not in ZERO_TYPES)
    return DiskFacts(
        path,
        size,
        descriptor.create_type,
        tuple(descriptor.extents),
        files,
        {**descriptor.values, **descriptor.ddb},
        descriptor.parent_hint,
        problem,
    )
