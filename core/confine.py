"""Paths a descriptor names (OVF hrefs, VMX fileNames, VMDK extents) stay in the descriptor's folder.

A descriptor is input we did not write: ``ovf:href="/etc/shadow"``, ``../../etc/passwd`` or a
symlink to a host file would otherwise be copied into a disk image. Every such path is resolved
(symlinks included) and must land inside the descriptor's own folder; anything else is one
error line naming the path. An ESXi VMX names its disks ``/vmfs/volumes/<datastore>/...``: those
are found only through an explicit datastore → local folder map (``--datastore-dir NAME=DIR``),
never by following the absolute path.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from core.errors import InputError

VMFS_VOLUMES = "/vmfs/volumes/"


def vmfs_datastore(name: str) -> tuple[str, str] | None:
    """'/vmfs/volumes/<datastore>/dir/x.vmdk' → ('<datastore>', 'dir/x.vmdk'); None for any other path."""
    if not name.startswith(VMFS_VOLUMES):
        return None
    datastore, _, rest = name[len(VMFS_VOLUMES) :].partition("/")
    return (datastore, rest) if datastore and rest else None


def is_inside(path: Path, folder: Path) -> bool:
    """Whether ``path``, symlinks resolved, is ``folder`` itself or lies under it."""
    return path.resolve().is_relative_to(folder.resolve())


def confined(base: Path, name: str, what: str, datastores: Mapping[str, Path] | None = None) -> Path:
    """The local file that ``name`` (as a descriptor in folder ``base`` writes it) stands for.

    Relative names are taken from ``base``; an absolute name must already lie under it;
    ``/vmfs/volumes/DS/...`` is looked up in ``datastores``. The result, symlinks resolved, must be
    inside ``base`` (or the datastore's folder): otherwise InputError naming ``name``.
    """
    on_datastore = vmfs_datastore(name)
    if on_datastore is not None:
        datastore, rest = on_datastore
        folder = (datastores or {}).get(datastore)
        if folder is None:
            raise InputError(
                f"{what} {name} is on ESXi datastore {datastore!r}: give --datastore-dir {datastore}=DIR "
                "(the local copy of that datastore); absolute paths are never followed"
            )
        return _inside(Path(folder), Path(folder) / rest, name, what)
    return _inside(base, base / name, name, what)  # an absolute name replaces base in the join


def _inside(folder: Path, candidate: Path, name: str, what: str) -> Path:
    root = folder.resolve()
    resolved = candidate.resolve()
    if not resolved.is_relative_to(root) or resolved == root:
        raise InputError(f"{what} {name} is outside {root} (symlinks resolved): refused")
    return resolved


def parse_datastore_dirs(flags: tuple[str, ...] | list[str]) -> dict[str, Path]:
    """``NAME=DIR`` flags → {datastore: existing folder}."""
    found: dict[str, Path] = {}
    for flag in flags:
        datastore, sep, folder = flag.partition("=")
        if not sep or not datastore or not folder:
            raise InputError(f"--datastore-dir {flag!r}: expected NAME=DIR")
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise InputError(f"--datastore-dir {flag!r}: {folder} is not a folder")
        found[datastore] = path.resolve()
    return found
