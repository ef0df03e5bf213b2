"""A raw block device target (a loop device standing for a block-mode PVC) holding old data."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from converters.disks import DiskJob, LocalSource, transfer_disks
from tests.disks.conftest import MiB, make_vmdk, same_image


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[Path]:
    backing = tmp_path / "device.bin"
    backing.write_bytes(b"\xff" * 64 * MiB)  # stale data the transfer must zero where the disk has holes
    result = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"no loop devices here: {result.stderr.strip()}")
    device = Path(result.stdout.strip())
    try:
        yield device
    finally:
        subprocess.run(["losetup", "-d", str(device)], check=False)


def test_block_device_target(loop_device: Path, src_dir: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    src = make_vmdk(src_dir, "b", "monolithicSparse")
    [result] = transfer_disks([DiskJob("b", LocalSource(src), loop_device)], progress="none")
    assert result.target == loop_device
    assert same_image(src, loop_device)  # holes were zeroed on the device, not left as 0xff
    assert list((tmp_path / "cache" / "migrator" / "disks").glob("*.transfer"))  # the record is not on /dev
    [again] = transfer_disks([DiskJob("b", LocalSource(src), loop_device)], progress="none")
    assert again.skipped
