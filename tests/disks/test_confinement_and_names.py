"""Issue 12: an extent symlinked out of the disk's folder is refused; a renamed sparse VMDK (and a
renamed OVA member) is read as qemu-img reads it. Issue 10: the engine's public resume-state API."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from converters.disks import (
    DiskJob,
    LocalSource,
    TarMemberSource,
    discard_transfer,
    transfer_disks,
    transfer_status,
)
from tests.disks.conftest import MiB, assert_one_line_error, make_vmdk, run_cli, same_image


def test_extent_symlinked_outside_its_folder_is_refused(tmp_path: Path, src_dir: Path, out_dir: Path) -> None:
    secret = tmp_path / "host-secret"  # stands for /etc/shadow
    secret.write_bytes(b"root:$6$very-secret-hash:19000:0:99999:7:::\n".ljust(64 * MiB, b"\0"))
    src = make_vmdk(src_dir, "e", "monolithicFlat")
    (src_dir / "e-flat.vmdk").unlink()
    os.symlink(secret, src_dir / "link-flat.vmdk")
    src.write_text(src.read_text().replace('"e-flat.vmdk"', '"link-flat.vmdk"'))
    result = run_cli(str(src), str(out_dir / "e.img"))
    assert_one_line_error(result, "link-flat.vmdk", str(secret), "outside the disk's folder", "refused")
    assert list(out_dir.iterdir()) == []  # no image: nothing of the secret was copied


def test_symlink_inside_the_folder_is_fine(src_dir: Path, out_dir: Path) -> None:
    src = make_vmdk(src_dir, "i", "monolithicFlat")
    (src_dir / "i-flat.vmdk").rename(src_dir / "real-flat.vmdk")
    os.symlink("real-flat.vmdk", src_dir / "i-flat.vmdk")
    result = run_cli(str(src), str(out_dir / "i.img"))
    assert result.returncode == 0, result.stderr
    assert same_image(src, out_dir / "i.img")


def test_renamed_sparse_and_stream_optimized_vmdk(src_dir: Path, out_dir: Path) -> None:
    for subformat in ("monolithicSparse", "streamOptimized"):
        original = make_vmdk(src_dir, f"orig-{subformat}", subformat)
        renamed = src_dir / f"renamed-{subformat}.vmdk"
        original.rename(renamed)  # its embedded descriptor still names orig-*.vmdk
        target = out_dir / f"{subformat}.img"
        result = run_cli(str(renamed), str(target))
        assert result.returncode == 0, result.stderr
        assert same_image(renamed, target)


def test_ova_member_read_in_place_even_renamed(src_dir: Path, out_dir: Path) -> None:
    disk = make_vmdk(src_dir, "orig", "streamOptimized")
    ova = src_dir / "vm.ova"
    with tarfile.open(ova, "w") as tar:
        tar.add(disk, arcname="vm-disk1.vmdk")  # renamed inside the archive
    job = DiskJob("d", TarMemberSource(ova, "vm-disk1.vmdk"), out_dir / "d.img")
    [result] = transfer_disks([job], progress="none", verify=True)
    assert result.verified and same_image(disk, out_dir / "d.img")
    assert sorted(p.name for p in src_dir.iterdir()) == ["orig.vmdk", "vm.ova"]  # nothing extracted
    missing = DiskJob("m", TarMemberSource(ova, "nope.vmdk"), out_dir / "m.img")
    try:
        transfer_disks([missing], progress="none")
    except Exception as exc:
        assert "no member 'nope.vmdk'" in str(exc) and "\n" not in str(exc)
    else:
        raise AssertionError("a missing member must fail")


def test_transfer_status_and_discard(src_dir: Path, out_dir: Path) -> None:
    src = make_vmdk(src_dir, "s", "monolithicSparse")
    target = out_dir / "s.img"
    assert transfer_status(target) is None
    [first] = transfer_disks([DiskJob("s", LocalSource(src), target)], progress="none", chunk_size=MiB)
    status = transfer_status(target)
    assert status is not None and status.complete and status.chunks_done == status.chunks_total == 64
    assert status.bytes_transferred == first.bytes_transferred and status.virtual_size == 64 * MiB
    assert {p.stat().st_mode & 0o777 for p in out_dir.glob(".s.img.transfer*")} == {0o600}  # like the image
    assert discard_transfer(target) and transfer_status(target) is None and not discard_transfer(target)
    assert [p.name for p in out_dir.iterdir()] == ["s.img"]  # the image stays, the record (and -wal/-shm) go
    [again] = transfer_disks([DiskJob("s", LocalSource(src), target)], progress="none", chunk_size=MiB)
    assert not again.skipped and again.bytes_transferred == first.bytes_transferred  # a full copy


def test_a_changed_flat_extent_is_copied_again(src_dir: Path, out_dir: Path) -> None:
    """The source's identity covers the files its descriptor names, not only the descriptor."""
    src = make_vmdk(src_dir, "f", "monolithicFlat")
    target = out_dir / "f.img"
    assert not transfer_disks([DiskJob("f", LocalSource(src), target)], progress="none")[0].skipped
    assert transfer_disks([DiskJob("f", LocalSource(src), target)], progress="none")[0].skipped
    with open(src_dir / "f-flat.vmdk", "r+b") as f:  # the VM wrote to its disk; the descriptor is unchanged
        f.seek(9 * MiB)
        f.write(b"new data")
    [result] = transfer_disks([DiskJob("f", LocalSource(src), target)], progress="none")
    assert not result.skipped and same_image(src, target)
