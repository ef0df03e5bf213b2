"""The delta copier (converters/disks/delta.py) and the PVC delta filler's stream and shell.

Real files, real qemu-img, the real shells (busybox's, as in the filler image, and the system's);
the cluster target's objects against the fake API server over real HTTP.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from converters.disks import LocalSource
from converters.disks.delta import copy_extents, journal_path
from core.errors import DiskError
from migrator.convert import fill_delta
from tests.warm.cbt_env import flat_vmdk

MiB = 1 << 20


class Interrupted(Exception):
    pass


def _same(a: Path, b: Path) -> bool:
    return subprocess.run(["qemu-img", "compare", "-q", "-f", "raw", "-F", "raw", str(a), str(b)]).returncode == 0


def _write(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(data)


def test_full_copy_then_deltas_through_a_flat_vmdk(tmp_path: Path) -> None:
    raw = tmp_path / "src.raw"
    with raw.open("wb") as f:
        f.truncate(24 * MiB)
    _write(raw, 1 * MiB, os.urandom(2 * MiB))
    _write(raw, 20 * MiB, os.urandom(MiB))
    descriptor, flat = flat_vmdk(raw, tmp_path / "vmdk", "disk")
    image = tmp_path / "out" / "disk.img"
    full = copy_extents(LocalSource(descriptor), image, [(1 * MiB, 2 * MiB), (20 * MiB, MiB)], key="r1", fresh=True)
    assert full.copied_bytes == full.total_bytes == 3 * MiB
    assert _same(flat, image)

    # changes: new data, and a block zeroed (a delta writes zeros too)
    _write(flat, 5 * MiB, os.urandom(64 << 10))
    _write(flat, 1 * MiB, bytes(64 << 10))
    delta = copy_extents(LocalSource(descriptor), image, [(5 * MiB, 64 << 10), (1 * MiB, 64 << 10)], key="r2")
    assert delta.total_bytes == 128 << 10
    assert _same(flat, image)
    again = copy_extents(LocalSource(descriptor), image, [(5 * MiB, 64 << 10), (1 * MiB, 64 << 10)], key="r2")
    assert again.copied_bytes == 0 and again.resumed_extents == 2  # a finished key copies nothing again

    # a full copy empties the image first: what no extent names reads as zeros
    _write(image, 22 * MiB, b"stale")
    copy_extents(
        LocalSource(descriptor), image, [(1 * MiB, 2 * MiB), (5 * MiB, 64 << 10), (20 * MiB, MiB)], key="r3", fresh=True
    )
    assert _same(flat, image)


def test_an_interrupted_delta_resumes_after_what_is_on_disk(tmp_path: Path) -> None:
    source = tmp_path / "src.raw"
    with source.open("wb") as f:
        f.truncate(64 * MiB)
    image = tmp_path / "disk.img"
    shutil.copyfile(source, image)
    extents = [(i * 2 * MiB, MiB) for i in range(24)]  # 24 MiB in 24 extents
    for start, length in extents:
        _write(source, start, os.urandom(length))

    def stop_after_12_mib(copied: int) -> None:
        if copied >= 12 * MiB:
            raise Interrupted

    with pytest.raises(Interrupted):
        copy_extents(LocalSource(source), image, extents, key="k", progress=stop_after_12_mib)
    assert journal_path(image).exists()
    resumed = copy_extents(LocalSource(source), image, extents, key="k")
    assert resumed.resumed_extents >= 8  # the journal is written every 8 MiB, after an fsync
    assert resumed.copied_bytes <= 24 * MiB - 8 * MiB and resumed.total_bytes == 24 * MiB
    assert _same(source, image)


def test_a_delta_needs_the_earlier_copy(tmp_path: Path) -> None:
    source = tmp_path / "src.raw"
    source.write_bytes(bytes(MiB))
    with pytest.raises(DiskError, match="no earlier copy"):
        copy_extents(LocalSource(source), tmp_path / "missing.img", [(0, 4096)], key="k")
    wrong = tmp_path / "wrong.img"
    wrong.write_bytes(bytes(4096))
    with pytest.raises(DiskError, match="has 4096 bytes, the source disk 1048576"):
        copy_extents(LocalSource(source), wrong, [(0, 4096)], key="k")


@pytest.mark.parametrize("shell", [["busybox", "sh"], ["sh"]], ids=["busybox", "system-sh"])
def test_the_filler_applies_a_delta_stream(tmp_path: Path, shell: list[str]) -> None:
    if shutil.which(shell[0]) is None:
        pytest.skip(f"{shell[0]} not installed")
    old = tmp_path / "old.img"
    with old.open("wb") as f:
        f.truncate(16 * MiB)
    _write(old, 0, os.urandom(MiB))
    new = tmp_path / "new.img"
    shutil.copyfile(old, new)
    extents = [(512, 1536), (3 * MiB, 200 << 10), (15 * MiB, MiB)]  # sector-aligned, not block-aligned
    for start, length in extents:
        _write(new, start, os.urandom(length))
    volume = tmp_path / "disk.img"  # what the filler pod sees at /data/disk.img
    shutil.copyfile(old, volume)
    stream = b"".join(fill_delta.delta_stream(new, extents))
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    if shell[0] == "busybox":  # the filler image's dd is busybox's
        (tmp_path / "bin").mkdir()
        (tmp_path / "bin" / "dd").symlink_to(shutil.which("busybox") or "busybox")
    result = subprocess.run([*shell, "-c", fill_delta.apply_script(str(volume))], input=stream, env=env)
    assert result.returncode == 0
    assert _same(new, volume)
    truncated = subprocess.run([*shell, "-c", fill_delta.apply_script(str(volume))], input=stream[:-4], env=env)
    assert truncated.returncode == 2  # a stream cut short is an error, never a silent partial fill


def test_the_run_s_bandwidth_bucket_is_asked_for_every_byte_a_round_reads(tmp_path: Path) -> None:
    """`migrate --max-rate` covers the precopy rounds: the bucket is asked before each piece is read, may stop it."""
    raw = tmp_path / "src.raw"
    with raw.open("wb") as f:
        f.truncate(32 * MiB)
    _write(raw, 0, os.urandom(MiB))
    _write(raw, 16 * MiB, os.urandom(12 * MiB))
    descriptor, flat = flat_vmdk(raw, tmp_path / "vmdk", "disk")
    image = tmp_path / "out" / "disk.img"

    class Bucket:
        def __init__(self, stop_after: int | None = None) -> None:
            self.asked: list[int] = []
            self.stop_after = stop_after

        def acquire(self, nbytes: int) -> None:
            if self.stop_after is not None and sum(self.asked) >= self.stop_after:
                raise Interrupted("cancelled")
            self.asked.append(nbytes)

    extents = [(0, MiB), (16 * MiB, 12 * MiB)]
    stopping = Bucket(stop_after=8 * MiB)
    with pytest.raises(Interrupted):
        copy_extents(LocalSource(descriptor), image, extents, key="r1", fresh=True, rate_limiter=stopping)
    bucket = Bucket()
    done = copy_extents(LocalSource(descriptor), image, extents, key="r1", fresh=True, rate_limiter=bucket)
    assert sum(bucket.asked) == done.copied_bytes == done.total_bytes == 13 * MiB
    assert max(bucket.asked) <= 8 * MiB and _same(flat, image)
