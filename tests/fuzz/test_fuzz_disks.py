"""Fuzz the disk engine's VMDK descriptor and sparse-header parsers, and its format detection (read-only use)."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from converters.disks.image import open_local
from converters.disks.vmdk import parse_descriptor, parse_sparse_header
from tests.fuzz.bounded import bounded, mutate

EDITS = st.lists(st.tuples(st.integers(0, 4096), st.integers(0, 32), st.binary(max_size=32)), max_size=8)
DESCRIPTOR = (
    b'# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType="monolithicFlat"\n'
    b'RW 2048 FLAT "disk-flat.vmdk" 0\nddb.geometry.cylinders = "2"\n'
)


@given(EDITS)
def test_descriptor_mutations(edits: list[tuple[int, int, bytes]]) -> None:
    bounded(parse_descriptor, mutate(DESCRIPTOR, edits), name="fuzz.vmdk")


@given(st.binary(max_size=2048))
def test_descriptor_bytes(data: bytes) -> None:
    bounded(parse_descriptor, data, name="fuzz.vmdk")


# KDMV, version, flags, capacity, grain, descriptor offset/size, GTEs per GT, rgd, gd, overhead, ...
HEADER = st.builds(
    lambda v, fl, cap, gr, doff, dsz, gtes, rgd, gd, ov, comp: struct.pack(
        "<4sIIQQQQIQQQB4sH", b"KDMV", v, fl, cap, gr, doff, dsz, gtes, rgd, gd, ov, 0, b"\n \r\n", comp
    ),
    st.integers(0, 4), st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(0, 2**16 - 1),
)  # fmt: skip


@given(HEADER, st.binary(max_size=64))
def test_sparse_header(header: bytes, tail: bytes) -> None:
    bounded(parse_sparse_header, header + tail, name="fuzz.vmdk")


@given(st.one_of(HEADER.map(lambda h: h + bytes(512 - len(h))), st.binary(max_size=1024)), EDITS)
def test_format_detection_of_a_file(head: bytes, edits: list[tuple[int, int, bytes]]) -> None:
    with tempfile.TemporaryDirectory(prefix="migrator-fuzz-") as folder:
        path = Path(folder) / "fuzz.vmdk"
        path.write_bytes(mutate(head, edits))
        disk = bounded(open_local, path)
        close = getattr(disk, "close", None)
        if callable(close):
            close()
