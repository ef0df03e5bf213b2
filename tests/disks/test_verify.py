"""Digests and --verify: a byte changed on the target after a completed transfer is found and named
by its chunk's offset, by ``--verify`` (re-read from storage) and by a re-run (resume)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from converters.disks import DiskJob, LocalSource, transfer_disks
from converters.disks.writer import StorageReader, Target
from core.errors import DiskError
from tests.disks.conftest import MiB, qemu_img, qemu_io, run_cli, same_image

CHUNK = str(MiB)


def _source(folder: Path) -> Path:
    src = folder / "d.vmdk"
    qemu_img("create", "-f", "vmdk", str(src), "16M")
    qemu_io(src, "write -P 0x5a 1M 3M", "write -P 0x21 10M 64k")
    return src


def _flip(path: Path, offset: int) -> None:
    """Change one byte in place, as an operator's slip or a failing disk would: dd conv=notrunc."""
    with open(path, "rb") as f:
        f.seek(offset)
        old = f.read(1) or b"\0"
    subprocess.run(
        ["dd", f"of={path}", "bs=1", f"seek={offset}", "count=1", "conv=notrunc", "status=none"],
        input=bytes([old[0] ^ 0xFF]),
        check=True,
    )


@pytest.mark.parametrize("offset", [2 * MiB + 12345, 7 * MiB + 5], ids=["in-data", "in-a-hole"])
def test_flipped_byte_is_caught_by_verify(offset: int, src_dir: Path, out_dir: Path) -> None:
    src, target = _source(src_dir), out_dir / "d.img"
    first = run_cli(str(src), str(target), "--progress", "none", "--chunk-size", CHUNK, "--verify")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["verified"] is True and summary["verified_bytes"] >= 3 * MiB + 64 * 1024
    _flip(target, offset)
    checked = run_cli(str(src), str(target), "--progress", "none", "--chunk-size", CHUNK, "--verify")
    assert checked.returncode != 0
    lines = checked.stderr.strip().splitlines()
    chunk_at = offset // MiB * MiB
    assert len(lines) == 1 and f"chunk at byte {chunk_at} " in lines[0] and "verification failed" in lines[0], lines
    # The damaged chunk is forgotten: the next run copies it again, and the image is whole.
    again = run_cli(str(src), str(target), "--progress", "none", "--chunk-size", CHUNK, "--verify")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["bytes_transferred"] <= MiB
    assert same_image(src, target)


@pytest.mark.parametrize("offset", [2 * MiB + 12345, 7 * MiB + 5], ids=["in-data", "in-a-hole"])
def test_flipped_byte_is_caught_by_a_resume(offset: int, src_dir: Path, out_dir: Path) -> None:
    src, target = _source(src_dir), out_dir / "d.img"
    assert run_cli(str(src), str(target), "--progress", "none", "--chunk-size", CHUNK).returncode == 0
    _flip(target, offset)
    again = run_cli(str(src), str(target), "--progress", "none", "--chunk-size", CHUNK)
    assert again.returncode == 0, again.stderr
    chunk_at = offset // MiB * MiB
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and f"chunk at byte {chunk_at} " in lines[0], lines
    summary = json.loads(again.stdout)
    assert summary["repaired_chunks_at"] == [chunk_at] and summary["skipped"] is False
    assert summary["bytes_transferred"] <= MiB  # only the damaged chunk was copied again
    assert same_image(src, target)


def test_a_bad_write_is_caught_by_verify(src_dir: Path, out_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The digest is of the source bytes: a target that does not hold them fails --verify (a flip on the way)."""
    from converters.disks import writer

    original = writer.Target.write

    def flipping_write(self: writer.Target, offset: int, data: memoryview) -> None:
        damaged = bytearray(data)
        damaged[0] ^= 0xFF
        original(self, offset, memoryview(damaged))

    monkeypatch.setattr(writer.Target, "write", flipping_write)
    src = src_dir / "s.vmdk"  # streamOptimized: grains are inflated in memory and written by ``write``
    qemu_img("convert", "-O", "vmdk", "-o", "subformat=streamOptimized", str(_source(src_dir)), str(src))
    job = DiskJob("v", LocalSource(src), out_dir / "v.img")
    with pytest.raises(DiskError, match=r"verification failed: chunk at byte \d+ .* differs from the source's digest"):
        transfer_disks([job], progress="none", verify=True, chunk_size=MiB)
    monkeypatch.undo()
    [result] = transfer_disks([job], progress="none", verify=True, chunk_size=MiB)
    assert result.verified and result.bytes_transferred > 0
    assert same_image(src, out_dir / "v.img")


def test_verify_reads_from_storage(out_dir: Path) -> None:
    """ext4 (the test machine's) takes O_DIRECT: the verification never sees the page cache."""
    path = out_dir / "x.img"
    path.write_bytes(b"\1" * 8192)
    target = Target(path, "raw")
    assert target.reopen(8192)
    reader = StorageReader(target)
    try:
        assert reader.direct
    finally:
        reader.close()
        target.close()
