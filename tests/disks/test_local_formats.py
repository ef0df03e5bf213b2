"""Every VMDK kind a vSphere estate has, made by qemu-img, copied to raw and qcow2 and compared by qemu-img."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from converters.disks import DiskJob, LocalSource, TransferResult, transfer_disks
from tests.disks.conftest import MiB, allocated, make_vmdk, qemu_img, qemu_io, run_cli, same_image

SUBFORMATS = ["monolithicFlat", "monolithicSparse", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat", "streamOptimized"]


@pytest.mark.parametrize("subformat", SUBFORMATS)
def test_each_vmdk_kind_to_sparse_raw(subformat: str, src_dir: Path, out_dir: Path) -> None:
    size = "3G" if subformat.startswith("twoGb") else "64M"  # twoGb* split only above 2 GiB
    src = make_vmdk(src_dir, "disk", subformat, size)
    target = out_dir / "disk.img"
    job = DiskJob("disk", LocalSource(src), target)
    [result] = transfer_disks([job], progress="none", compare=True, verify=True)
    assert isinstance(result, TransferResult)
    assert same_image(src, target)
    assert result.virtual_size == target.stat().st_size == (3 << 30 if size == "3G" else 64 * MiB)
    assert result.bytes_transferred <= 5 * MiB  # holes are not read: 4 MiB + 64 KiB of data (+ flat rounding)
    assert allocated(target) <= 5 * MiB  # and not written
    assert result.verified and not result.skipped
    assert 4 * MiB <= result.verified_bytes <= allocated(target)  # re-read from storage: the data, not the holes


def test_snapshot_chain(src_dir: Path, out_dir: Path) -> None:
    base = make_vmdk(src_dir, "base", "monolithicSparse")
    delta = src_dir / "base-000001.vmdk"
    qemu_img("create", "-f", "vmdk", "-b", base.name, "-F", "vmdk", str(delta))
    qemu_io(delta, "write -P 0xcd 2M 64k", "write -z 41M 1M")
    target = out_dir / "chain.img"
    transfer_disks([DiskJob("chain", LocalSource(delta), target)], progress="none")
    assert same_image(delta, target)
    assert not same_image(base, target)  # the delta's writes are there
    with open(target, "rb") as f:
        f.seek(2 * MiB)
        assert f.read(4) == b"\xcd" * 4
        f.seek(1 * MiB)
        assert f.read(4) == b"\xab" * 4  # from the parent


def test_esxi_vmfs_descriptor(src_dir: Path, out_dir: Path) -> None:
    """ESXi writes createType="vmfs" with a VMFS extent; qemu-img writes monolithicFlat/FLAT: edit one into the
    other."""
    src = make_vmdk(src_dir, "esx", "monolithicFlat")
    text = src.read_text().replace('createType="monolithicFlat"', 'createType="vmfs"')
    text = text.replace(" FLAT ", " VMFS ").replace('"esx-flat.vmdk" 0', '"esx-flat.vmdk"')
    src.write_text(text)
    assert 'createType="vmfs"' in src.read_text() and " VMFS " in src.read_text()
    target = out_dir / "esx.img"
    [result] = transfer_disks([DiskJob("esx", LocalSource(src), target)], progress="none")
    assert same_image(
        src_dir / "esx-flat.vmdk", target
    )  # qemu-img cannot read the vmfs descriptor; its extent is the disk
    assert result.virtual_size == 64 * MiB


def test_raw_and_qcow2_sources_and_qcow2_target(src_dir: Path, out_dir: Path) -> None:
    qcow = src_dir / "q.qcow2"
    qemu_img("create", "-f", "qcow2", str(qcow), "64M")
    qemu_io(qcow, "write -P 0x5a 3M 2M", fmt="qcow2")
    raw_target = out_dir / "q.img"
    transfer_disks([DiskJob("q", LocalSource(qcow), raw_target)], progress="none")
    assert same_image(qcow, raw_target)
    # raw in, qcow2 out
    q2 = out_dir / "again.qcow2"
    [result] = transfer_disks([DiskJob("again", LocalSource(raw_target), q2, "qcow2")], progress="none")
    assert same_image(raw_target, q2, "qcow2")
    assert result.target == q2
    assert not list(out_dir.glob(".again.qcow2.part*"))  # the raw part is gone


def test_directory_target_is_a_pvc(src_dir: Path, out_dir: Path) -> None:
    src = make_vmdk(src_dir, "d", "monolithicSparse")
    pvc = out_dir / "pvc"
    pvc.mkdir()
    [result] = transfer_disks([DiskJob("d", LocalSource(src), pvc)], progress="none")
    assert result.target == pvc / "disk.img"
    assert same_image(src, pvc / "disk.img")


def test_several_disks_at_once(src_dir: Path, out_dir: Path) -> None:
    jobs = [
        DiskJob(f"d{i}", LocalSource(make_vmdk(src_dir, f"d{i}", kind)), out_dir / f"d{i}.img")
        for i, kind in enumerate(["monolithicSparse", "streamOptimized", "monolithicFlat"])
    ]
    results = transfer_disks(jobs, concurrency=2, progress="none")
    assert [r.name for r in results] == ["d0", "d1", "d2"]
    for job in jobs:
        assert isinstance(job.source, LocalSource)
        assert same_image(job.source.path, job.target)


def test_cli_json_progress_and_second_run_skips(src_dir: Path, out_dir: Path) -> None:
    src = make_vmdk(src_dir, "p", "monolithicSparse")
    target = out_dir / "p.img"
    first = run_cli(str(src), str(target), "--progress", "json", "--chunk-size", str(MiB))
    assert first.returncode == 0, first.stderr
    events = [json.loads(line) for line in first.stdout.splitlines()]
    progress = [e for e in events if "disk" in e]
    assert progress and {"disk", "bytes_done", "bytes_total", "rate", "eta"} <= set(progress[0])
    assert progress[-1]["state"] == "done" and progress[-1]["bytes_done"] == 64 * MiB
    assert events[-1]["result"]["skipped"] is False
    # Second run: the record says complete and the target is unchanged → skipped, source not read:
    # move the data away; a re-read would fail.
    src.rename(src_dir / "moved.vmdk")
    (src_dir / "p.vmdk").write_bytes((src_dir / "moved.vmdk").read_bytes()[:512])
    st = (src_dir / "moved.vmdk").stat()
    os.truncate(src_dir / "p.vmdk", st.st_size)  # same size and mtime, but no grains: unreadable
    os.utime(src_dir / "p.vmdk", ns=(st.st_atime_ns, st.st_mtime_ns))
    second = run_cli(str(src), str(target), "--progress", "json", "--chunk-size", str(MiB))
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout.splitlines()[-1])["result"]["skipped"] is True
    # A changed target is not trusted: the disk is copied again (and here fails on the gutted source).
    with open(target, "r+b") as f:
        f.write(b"x")
    third = run_cli(str(src), str(target), "--progress", "none", "--chunk-size", str(MiB))
    assert third.returncode != 0


def test_quiet_without_a_terminal(src_dir: Path, out_dir: Path) -> None:
    src = make_vmdk(src_dir, "q", "monolithicSparse")
    result = run_cli(str(src), str(out_dir / "q.img"))  # --progress auto, stdout/stderr are pipes
    assert result.returncode == 0
    assert result.stderr == ""
    assert len(result.stdout.splitlines()) == 1 and json.loads(result.stdout)["verified"] is False
