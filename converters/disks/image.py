"""A virtual disk assembled from its layers: descriptor → extents → parent chain.

``open_local`` and ``open_http`` recognise the format from the first bytes (VMDK
descriptor, hosted sparse ``KDMV``, qcow2, raw) and return a ``VirtualDisk`` whose
``segments`` say what each byte range holds and whose ``read`` fetches it.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable
from pathlib import Path
from typing import Any

from converters.disks.sources import HttpFile, LocalFile, SliceFile
from converters.disks.sparse import GRAIN, HOLE, RAW, ZERO, FlatExtent, Segment, SparseExtent, ZeroExtent, merge
from converters.disks.vmdk import (
    COWD_MAGIC,
    FLAT_TYPES,
    SECTOR,
    SPARSE_MAGIC,
    SPARSE_TYPES,
    ZERO_TYPES,
    ConfinementError,
    Descriptor,
    SparseHeader,
    check_extent_path,
    looks_like_descriptor,
    parse_descriptor,
    parse_sparse_header,
)
from core.confine import is_inside
from core.errors import DiskError

MAX_CHAIN = 32
MAX_DESCRIPTOR = 1 << 20
QCOW2_MAGIC = b"QFI\xfb"
OTHER_MAGICS = {
    b"conectix": "VHD",
    b"vhdxfile": "VHDX",
    b"<<< Oracle VM VirtualBox Disk Image >>>": "VDI",
    b"<<< Sun VirtualBox Disk Image >>>": "VDI",
    b"<<< innotek VirtualBox Disk Image >>>": "VDI",
}
Extent = FlatExtent | SparseExtent | ZeroExtent


class VirtualDisk:
    def __init__(self, name: str, kind: str, extents: list[Extent], parent: VirtualDisk | None, readers: list) -> None:
        self.name = name
        self.kind = kind
        self.extents = extents
        self.parent = parent
        self.readers = readers
        self.size = sum(e.size for e in extents)
        self.starts: list[int] = []
        pos = 0
        for e in extents:
            self.starts.append(pos)
            pos += e.size
        if parent is not None and parent.size < self.size:
            raise DiskError(f"{name}: parent disk {parent.name} is smaller than its child")

    def segments(self, start: int, end: int) -> list[Segment]:
        end = min(end, self.size)
        out: list[Segment] = []
        for base, extent in zip(self.starts, self.extents, strict=True):
            a, b = max(start, base), min(end, base + extent.size)
            if a >= b:
                continue
            for s, n, k, r, h, sk in extent.segments(a - base, b - base):
                s += base
                if k == HOLE:
                    if self.parent is not None:
                        out.extend(self.parent.segments(s, s + n))
                    else:
                        out.append((s, n, ZERO, None, 0, 0))
                else:
                    out.append((s, n, k, r, h, sk))
        return merge(out)

    def allocated_bytes(self, step: int = 1 << 30) -> int:
        total = 0
        for pos in range(0, self.size, step):
            total += sum(n for _s, n, k, *_ in self.segments(pos, pos + step) if k != ZERO)
        return total

    def read(self, segments: list[Segment], out: memoryview, base: int) -> None:
        """Fill ``out`` (which stands for virtual bytes from ``base``) for the given segments."""
        i = 0
        while i < len(segments):
            s, n, k, r, h, sk = segments[i]
            at = s - base
            if k == ZERO:
                out[at : at + n] = memoryview(bytes(n)) if n > (1 << 20) else bytes(n)
            elif k == RAW:
                assert r is not None
                r.read_into(h, out[at : at + n])
            elif k == GRAIN:
                # Compressed grains lie in file order: fetch a run of them in one read.
                j = i
                while (
                    j + 1 < len(segments)
                    and segments[j + 1][2] == GRAIN
                    and segments[j + 1][3] is r
                    and 0 <= segments[j + 1][4] - segments[j][4] <= 2 * _grain_span(r, self)
                    and segments[j + 1][4] - h < 32 << 20
                ):
                    j += 1
                extent = _extent_of(self, r)
                bound = extent.grain + extent.grain // 512 + 1024
                span_end = min(segments[j][4] + bound, r.size)
                span = bytearray(span_end - h)
                r.read_into(h, memoryview(span))
                view = memoryview(span)
                for s2, n2, _k2, _r2, h2, sk2 in segments[i : j + 1]:
                    extent.inflate(view, h2 - h, sk2, n2, out[s2 - base : s2 - base + n2], where=h2)
                i = j + 1
                continue
            i += 1

    def close(self) -> None:
        for r in self.readers:
            r.close()
        if self.parent is not None:
            self.parent.close()


def _extent_of(disk: VirtualDisk, reader: object) -> SparseExtent:
    layer: VirtualDisk | None = disk
    while layer is not None:
        for e in layer.extents:
            if isinstance(e, SparseExtent) and e.reader is reader:
                return e
        layer = layer.parent
    raise DiskError(f"{disk.name}: internal: compressed grain without its extent")


def _grain_span(reader: object, disk: VirtualDisk) -> int:
    return _extent_of(disk, reader).grain + 4096


def _check_magic(head: bytes, name: str) -> None:
    if head[:4] == COWD_MAGIC:
        raise DiskError(f"{name}: ESX vmfsSparse (COWD) delta disks are not supported: consolidate the snapshots first")
    for magic, kind in OTHER_MAGICS.items():
        if head.startswith(magic):
            raise DiskError(f"{name}: unsupported disk format {kind}")


def _build(name: str, descriptor: Descriptor, open_file, self_reader=None) -> tuple[list[Extent], list]:
    extents: list[Extent] = []
    # An embedded descriptor (monolithicSparse, streamOptimized) with one extent describes the
    # file it sits in, whatever name it gives: read it as qemu-img does (renamed files, OVA members).
    alone = self_reader is not None and len(descriptor.extents) == 1
    readers: list = []
    for ext in descriptor.extents:
        if ext.access == "NOACCESS":
            raise DiskError(f"{name}: extent {ext.filename} is NOACCESS")
        if ext.type in ZERO_TYPES:
            extents.append(ZeroExtent(ext.size))
            continue
        assert ext.filename is not None
        if ext.type in FLAT_TYPES:
            reader = open_file(ext.filename)
            readers.append(reader)
            extents.append(FlatExtent(reader, ext.offset * SECTOR, ext.size, name=name))
        elif ext.type in SPARSE_TYPES:
            if self_reader is not None and (alone or ext.filename == self_reader.name):
                reader = self_reader
            else:
                reader = open_file(ext.filename)
                readers.append(reader)
            head = bytearray(min(SECTOR, reader.size)) if reader.size >= 0 else bytearray(SECTOR)
            reader.read_into(0, memoryview(head))
            header = parse_sparse_header(bytes(head), name=f"{name}: extent {ext.filename}")
            extent = SparseExtent(reader, header, name=f"{name}: extent {ext.filename}")
            if extent.size < ext.size:
                raise DiskError(f"{name}: extent {ext.filename} is smaller than the descriptor says")
            extent.size = ext.size
            extents.append(extent)
        else:
            raise DiskError(
                f"{name}: extent type {ext.type} ({ext.filename}) is not supported: consolidate snapshots first"
            )
    return extents, readers


def local_descriptor(path: Path) -> tuple[Descriptor | None, SparseHeader | None]:
    """The VMDK descriptor of a local file (text, or embedded in a sparse extent) and the sparse
    header, parsed as convert parses them; (None, None) for a raw or qcow2 image."""
    top = LocalFile(Path(path))
    try:
        head = top.head(65536)
        _check_magic(head, str(path))
        if head[:4] == SPARSE_MAGIC:
            return _embedded_descriptor(top, head, str(path))
        if looks_like_descriptor(head):
            if top.size > MAX_DESCRIPTOR:
                raise DiskError(f"{path}: corrupt VMDK descriptor (too large)")
            return parse_descriptor(head, name=str(path)), None
        return None, None
    finally:
        top.close()


def _embedded_descriptor(reader, head: bytes, name: str) -> tuple[Descriptor | None, SparseHeader]:
    header = parse_sparse_header(head, name=name)
    if header.descriptor_offset and header.descriptor_size:
        at, n = header.descriptor_offset * SECTOR, header.descriptor_size * SECTOR
        if n > MAX_DESCRIPTOR:  # an embedded descriptor is one or a few KiB: never read a huge one
            raise DiskError(f"{name}: corrupt VMDK sparse header (embedded descriptor of {n} bytes)")
        if at + n > reader.size:
            raise DiskError(f"{name}: truncated VMDK (descriptor beyond end of file)")
        buf = bytearray(n)
        reader.read_into(at, memoryview(buf))
        return parse_descriptor(bytes(buf), name=name), header
    return None, header


def confined(folder: Path, name: str, *, label: str, what: str = "extent") -> Path:
    """``folder / name``, refused (one line naming it) unless it stays in ``folder`` with symlinks resolved."""
    check_extent_path(name, name=label)
    path = folder / name
    if not is_inside(path, folder):
        where = f"resolves to {path.resolve()}, outside the disk's folder {folder.resolve()}"
        raise ConfinementError(f"{label}: {what} {name} {where}: refused")
    return path


def open_local(path: Path, depth: int = 0) -> VirtualDisk:
    path = Path(path)
    name = str(path)
    if depth > MAX_CHAIN:
        raise DiskError(f"{name}: snapshot chain deeper than {MAX_CHAIN}")
    if path.is_dir():
        raise DiskError(f"{name}: is a directory, not a disk image")
    top = LocalFile(path)
    folder = path.parent

    def open_file(filename: str) -> LocalFile:
        extent_path = confined(folder, filename, label=name)
        if not extent_path.exists():
            raise DiskError(f"{name}: missing extent {filename}")
        return LocalFile(extent_path)

    return _open_disk(
        top,
        name,
        lambda: top.head(65536),
        open_file,
        open_parent=lambda descriptor: _local_parent(descriptor, folder, name, depth),
        open_qcow2=lambda: _open_qcow2(top, path),
    )


def _open_disk(
    top: Any,
    name: str,
    read_head: Callable[[], bytes],
    open_file: Callable[[str], Any],
    open_parent: Callable[[Descriptor], VirtualDisk | None],
    open_qcow2: Callable[[], VirtualDisk],
) -> VirtualDisk:
    """Tell the format from the first bytes and build the disk; one logic for local files and HTTP."""
    try:
        head = read_head()
        if not head:
            raise DiskError(f"{name}: empty file, not a disk image")
        _check_magic(head, name)
        if head[:4] == SPARSE_MAGIC:
            descriptor, header = _embedded_descriptor(top, head, name)
            if descriptor is None:
                return VirtualDisk(name, "vmdk", [SparseExtent(top, header, name=name)], None, [top])
            extents, readers = _build(name, descriptor, open_file, self_reader=top)
            parent = open_parent(descriptor)
            return VirtualDisk(name, f"vmdk:{descriptor.create_type}", extents, parent, [top, *readers])
        if head[:4] == QCOW2_MAGIC:
            return open_qcow2()
        if looks_like_descriptor(head):
            if top.size > MAX_DESCRIPTOR:
                raise DiskError(f"{name}: corrupt VMDK descriptor (too large)")
            descriptor = parse_descriptor(head, name=name)
            extents, readers = _build(name, descriptor, open_file)
            top.close()
            parent = open_parent(descriptor)
            return VirtualDisk(name, f"vmdk:{descriptor.create_type}", extents, parent, readers)
        lowered = name.lower()
        if lowered.endswith(".vmdk") and not lowered.endswith("-flat.vmdk"):
            raise DiskError(f"{name}: unknown format: neither a VMDK descriptor nor a sparse VMDK")
        return VirtualDisk(name, "raw", [FlatExtent(top, 0, top.size, name=name)], None, [top])
    except BaseException:
        top.close()
        raise


def _local_parent(descriptor: Descriptor, folder: Path, name: str, depth: int) -> VirtualDisk | None:
    if not descriptor.parent_hint:
        return None
    parent_path = confined(folder, descriptor.parent_hint, label=name, what="parent disk")
    if not parent_path.exists():
        raise DiskError(f"{name}: missing parent disk {descriptor.parent_hint}")
    return open_local(parent_path, depth + 1)


def open_tar_member(archive: Path, member: str) -> VirtualDisk:
    """A disk that is a member of an uncompressed tar (an OVA), read in place. Extents and parents
    a descriptor member names are members beside it; only regular, non-sparse members are read."""
    import tarfile  # only OVAs need it

    archive = Path(archive)
    name = f"{archive}:{member}"
    try:
        with tarfile.open(archive, "r:") as tar:
            members = {info.name.removeprefix("./"): info for info in tar.getmembers()}
    except FileNotFoundError:
        raise DiskError(f"{archive}: no such file") from None
    except (tarfile.TarError, OSError) as exc:
        raise DiskError(f"{archive}: not an uncompressed tar archive: {exc}") from None

    def reader(member_name: str, label: str) -> SliceFile:
        info = members.get(member_name.removeprefix("./"))
        if info is None:
            raise DiskError(f"{label}: no member {member_name!r} in {archive}")
        if not info.isreg() or info.sparse is not None:
            raise DiskError(f"{label}: member {member_name!r} is not a plain file: refused")
        return SliceFile(archive, info.offset_data, info.size, name=posixpath.basename(member_name))

    folder = posixpath.dirname(member.removeprefix("./"))

    def open_file(filename: str) -> SliceFile:
        check_extent_path(filename, name=name)
        return reader(posixpath.join(folder, filename), f"{name}: missing extent {filename}")

    def open_parent(descriptor: Descriptor) -> VirtualDisk | None:
        if descriptor.parent_hint:
            raise DiskError(f"{name}: a snapshot chain inside an archive is not supported")
        return None

    top = reader(member, name)

    def no_qcow2() -> VirtualDisk:
        raise DiskError(f"{name}: qcow2 inside an archive is not supported")

    return _open_disk(top, name, lambda: top.head(65536), open_file, open_parent=open_parent, open_qcow2=no_qcow2)


def _open_qcow2(top: LocalFile, path: Path) -> VirtualDisk:
    """qcow2 (and its backing chain): allocation and host offsets from ``qemu-img map``."""
    import subprocess  # only qemu-img needs it (4 ms of start-up)

    name = str(path)
    try:
        info = subprocess.run(
            ["qemu-img", "info", "--backing-chain", "--output=json", "-U", str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        chain = json.loads(info.stdout)
        mapped = subprocess.run(
            ["qemu-img", "map", "--output=json", "-U", str(path)], capture_output=True, text=True, check=True
        )
        entries = json.loads(mapped.stdout)
    except subprocess.CalledProcessError as exc:
        lines = exc.stderr.strip().splitlines() or ["qemu-img failed"]
        raise DiskError(f"{name}: {lines[-1].removeprefix('qemu-img: ')}") from None
    files = [top] + [LocalFile(Path(layer["filename"])) for layer in chain[1:]]
    size = chain[0]["virtual-size"]
    segments: list[Segment] = []
    for e in entries:
        if e.get("data") and "offset" in e:
            layer = chain[e["depth"]]
            if layer.get("format") not in ("qcow2", "raw"):
                raise DiskError(f"{name}: backing file format {layer.get('format')} is not supported")
            segments.append((e["start"], e["length"], RAW, files[e["depth"]], e["offset"], 0))
        elif e.get("data"):
            raise DiskError(f"{name}: compressed or encrypted qcow2 clusters are not supported")
        else:
            segments.append((e["start"], e["length"], ZERO, None, 0, 0))
    return VirtualDisk(name, "qcow2", [_MappedExtent(size, merge(segments))], None, files)


class _MappedExtent:
    """An extent whose segments were listed up front (from qemu-img map)."""

    def __init__(self, size: int, segments: list[Segment]) -> None:
        self.size = size
        self.all = segments

    def segments(self, start: int, end: int) -> list[Segment]:
        import bisect

        out: list[Segment] = []
        i = max(bisect.bisect_right(self.all, (start, float("inf"))) - 1, 0)
        while i < len(self.all) and self.all[i][0] < end:
            s, n, k, r, h, sk = self.all[i]
            a, b = max(s, start), min(s + n, end)
            if a < b:
                out.append((a, b - a, k, r, h + (a - s) if k == RAW else 0, 0))
            i += 1
        return out


def open_http(top: HttpFile, depth: int = 0) -> VirtualDisk:
    from converters.disks.sources import _safe

    name = _safe(top.url).split("?", 1)[0]
    if depth > MAX_CHAIN:
        raise DiskError(f"{name}: snapshot chain deeper than {MAX_CHAIN}")

    def open_file(filename: str) -> HttpFile:
        reader = top.sibling(filename)
        try:
            reader.size, _ = reader.fetch(0, None, 1)
        except DiskError as exc:
            if " 404 " in exc.message:
                raise DiskError(f"{name}: missing extent {filename} (HTTP 404)") from None
            raise
        return reader

    def no_qcow2() -> VirtualDisk:
        raise DiskError(f"{name}: qcow2 over HTTP is not supported")

    return _open_disk(
        top,
        name,
        lambda: top.probe(65536),
        open_file,
        open_parent=lambda descriptor: _http_parent(descriptor, top, name, depth),
        open_qcow2=no_qcow2,
    )


def _http_parent(descriptor: Descriptor, top: HttpFile, name: str, depth: int) -> VirtualDisk | None:
    if not descriptor.parent_hint:
        return None
    return open_http(top.sibling(descriptor.parent_hint), depth + 1)


__all__ = ["GRAIN", "HOLE", "RAW", "ZERO", "VirtualDisk", "open_http", "open_local", "open_tar_member"]
