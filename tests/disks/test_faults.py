"""Bad input: one line, non-zero exit, the source untouched, the target removed (or resumable)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.disks.conftest import MiB, assert_one_line_error, folder_digest, make_vmdk, run_cli


def _no_target(out_dir: Path) -> None:
    assert list(out_dir.iterdir()) == [], list(out_dir.iterdir())


def test_truncated_sparse_vmdk(src_dir: Path, out_dir: Path) -> None:
    src = make_vmdk(src_dir, "t", "monolithicSparse")
    os.truncate(src, src.stat().st_size - 3 * MiB)  # cut into the grains
    before = folder_digest(src_dir)
    result = run_cli(str(src), str(out_dir / "t.img"))
    assert_one_line_error(result, "truncated")
    assert folder_digest(src_dir) == before
    _no_target(out_dir)


def test_truncated_stream_optimized(src_dir: Path, out_dir: Path) -> None:
    src = make_vmdk(src_dir, "s", "streamOptimized")
    os.truncate(src, src.stat().st_size // 2)
    result = run_cli(str(src), str(out_dir / "s.img"))
    assert_one_line_error(result, "truncated")
    _no_target(out_dir)


def test_corrupt_sparse_header_and_descriptor(src_dir: Path, out_dir: Path) -> None:
    src = make_vmdk(src_dir, "c", "monolithicSparse")
    with open(src, "r+b") as f:
        f.seek(4)
        f.write(b"\x63\x00\x00\x00")  # version 99
    assert_one_line_error(run_cli(str(src), str(out_dir / "c.img")), "unsupported VMDK sparse version")
    desc = make_vmdk(src_dir, "d", "monolithicFlat")
    desc.write_text(desc.read_text().replace("RW ", "RW what ", 1))
    assert_one_line_error(run_cli(str(desc), str(out_dir / "d.img")), "corrupt VMDK descriptor")
    _no_target(out_dir)


def test_missing_extent(src_dir: Path, out_dir: Path) -> None:
    src = make_vmdk(src_dir, "m", "monolithicFlat")
    (src_dir / "m-flat.vmdk").unlink()
    assert_one_line_error(run_cli(str(src), str(out_dir / "m.img")), "missing extent m-flat.vmdk")
    _no_target(out_dir)


@pytest.mark.parametrize("path", ["../outside-flat.vmdk", "/etc/passwd", "sub/../../x-flat.vmdk"])
def test_extent_escaping_its_folder(path: str, tmp_path: Path, src_dir: Path, out_dir: Path) -> None:
    src = make_vmdk(src_dir, "e", "monolithicFlat")
    (tmp_path / "outside-flat.vmdk").write_bytes(b"\0" * 64 * MiB)
    src.write_text(src.read_text().replace('"e-flat.vmdk"', f'"{path}"'))
    before = folder_digest(src_dir)
    assert_one_line_error(run_cli(str(src), str(out_dir / "e.img")), "refused")
    assert folder_digest(src_dir) == before
    _no_target(out_dir)


def test_unknown_format(src_dir: Path, out_dir: Path) -> None:
    junk = src_dir / "junk.vmdk"
    junk.write_bytes(os.urandom(MiB))
    assert_one_line_error(run_cli(str(junk), str(out_dir / "j.img")), "unknown format")
    vhd = src_dir / "disk.vhd"
    subprocess.run(["qemu-img", "create", "-q", "-f", "vpc", str(vhd), "16M"], check=True)
    vhd.write_bytes(b"conectix" + vhd.read_bytes()[8:])  # qemu puts the VHD footer copy first
    assert_one_line_error(run_cli(str(vhd), str(out_dir / "v.img")), "unsupported disk format VHD")
    bad_type = make_vmdk(src_dir, "b", "monolithicFlat")
    bad_type.write_text(bad_type.read_text().replace("monolithicFlat", "fancyNewThing"))
    assert_one_line_error(run_cli(str(bad_type), str(out_dir / "b.img")), "unknown VMDK createType")
    assert_one_line_error(run_cli(str(src_dir / "nope.vmdk"), str(out_dir / "n.img")), "no such file")
    assert_one_line_error(run_cli(str(src_dir / "b.vmdk"), str(out_dir / "x.img"), "--format", "vdi"))
    _no_target(out_dir)


@pytest.fixture
def small_fs(tmp_path: Path):
    """A 20 MiB tmpfs (we run as root); skipped where mounting is not allowed."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mnt)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_not_enough_space(src_dir: Path, small_fs: Path) -> None:
    src = make_vmdk(src_dir, "big", "monolithicSparse", "256M")
    subprocess.run(["qemu-io", "-f", "vmdk", "-c", "write -P 0x77 100M 30M", str(src)], check=True, capture_output=True)
    before = folder_digest(src_dir)
    result = run_cli(str(src), str(small_fs / "big.img"))
    assert_one_line_error(result, "not enough free space", "needs 34.1 MiB")
    assert folder_digest(src_dir) == before
    assert list(small_fs.iterdir()) == []  # checked before starting: nothing created


def test_kill_9_resumes_without_recopying(src_dir: Path, out_dir: Path) -> None:
    src = src_dir / "k.vmdk"
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", str(src), "128M"], check=True)
    subprocess.run(
        ["qemu-io", "-f", "vmdk", "-c", "write -P 0x42 0 40M", "-c", "write -P 0x43 64M 24M", str(src)],
        check=True,
        capture_output=True,
    )
    target = out_dir / "k.img"
    args = [str(src), str(target), "--progress", "json", "--chunk-size", str(MiB), "--max-rate", str(16 * MiB)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    import json
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "converters.disks", *args], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    done_before_kill = 0
    for line in proc.stdout:
        event = json.loads(line)
        done_before_kill = event.get("bytes_transferred", 0)
        if done_before_kill >= 16 * MiB:
            proc.kill()  # SIGKILL
            break
    proc.wait()
    assert proc.returncode == -9
    assert 16 * MiB <= done_before_kill < 64 * MiB
    again = run_cli(*args[:2], "--progress", "json", "--chunk-size", str(MiB), "--compare")
    assert again.returncode == 0, again.stderr
    events = [json.loads(line) for line in again.stdout.splitlines()]
    assert events[0]["bytes_done"] >= 16 * MiB  # resumed from the recorded chunks
    result = events[-1]["result"]
    assert result["bytes_transferred"] <= 64 * MiB - done_before_kill + 2 * MiB  # done chunks not re-read
    assert result["skipped"] is False
    from tests.disks.conftest import same_image

    assert same_image(src, target)


def test_a_hostile_grain_directory_costs_what_the_file_holds(src_dir: Path) -> None:
    """A 1 MiB file claiming petabytes, every directory entry naming the same grain table: opening it
    reads one table, shares it, and stays small and quick (memory follows the file, not its claims)."""
    import resource
    import struct
    import time

    from converters.disks.image import open_local

    entries = 200_000  # directory entries, all naming the table at sector 2048
    gtes, grain = 512, 128
    header = struct.pack(
        "<4sIIQQQQIQQQB4sH", b"KDMV", 1, 3, entries * gtes * grain, grain, 0, 0, gtes, 0, 1, 2560, 0, b"\n \r\n", 0
    )
    path = src_dir / "bomb.vmdk"
    with open(path, "wb") as f:
        f.write(header.ljust(512, b"\0"))
        f.write(struct.pack(f"<{entries}I", *([2048] * entries)))
        f.truncate(2048 * 512 + gtes * 4)  # the one grain table: all zeros (holes)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    disk = open_local(path)
    try:
        assert disk.size == entries * gtes * grain * 512
        assert [k for _s, _n, k, *_ in disk.segments(0, 64 << 20)] == [0]  # all zeros, no table copies
    finally:
        disk.close()
    assert time.monotonic() - started < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024  # KiB: under 64 MiB more
