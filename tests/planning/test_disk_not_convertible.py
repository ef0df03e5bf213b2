"""One VMDK parser: a disk that convert would refuse is a Critical concern at plan time, with
convert's own line. Each refusal kind is planned from a real VMX, then handed to the disk engine."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from converters.disks import DiskJob, LocalSource, transfer_disks
from core.errors import DiskError, InputError
from core.plan import Severity
from migrator.planning.mapping import Maps
from migrator.planning.planner import PlanOptions, build_plan
from migrator.sources import open_source

HEAD = "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"


def _descriptor(body: str) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        (folder / "d.vmdk").write_text(HEAD + body)

    return write


def _flat(folder: Path, name: str = "d-flat.vmdk") -> None:
    with open(folder / name, "wb") as f:
        f.truncate(1 << 20)


def _symlinked_extent(folder: Path) -> None:
    secret = folder.parent / "host-secret"  # stands for /etc/shadow: outside the VM's folder
    secret.write_bytes(b"root:$6$not-for-the-image\n".ljust(1 << 20, b"\0"))
    os.symlink(secret, folder / "link-flat.vmdk")
    (folder / "d.vmdk").write_text(HEAD + 'createType="monolithicFlat"\nRW 2048 FLAT "link-flat.vmdk" 0\n')


def _missing_extent(folder: Path) -> None:
    (folder / "d.vmdk").write_text(HEAD + 'createType="monolithicFlat"\nRW 2048 FLAT "gone-flat.vmdk" 0\n')


def _with_flat(body: str) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        _flat(folder)
        (folder / "d.vmdk").write_text(HEAD + body)

    return write


def _corrupt_sparse(folder: Path) -> None:
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", str(folder / "d.vmdk"), "8M"], check=True)
    with open(folder / "d.vmdk", "r+b") as f:
        f.seek(4)
        f.write(b"\x09\0\0\0")  # version 9


REFUSALS: dict[str, tuple[Callable[[Path], None], str]] = {
    "corrupt-line": (_with_flat('createType="monolithicFlat"\nRW 2048 FLAT "d-flat.vmdk" 0\n!!garbage\n'), "corrupt"),
    "no-createType": (_with_flat('RW 2048 FLAT "d-flat.vmdk" 0\n'), "no createType"),
    "unknown-createType": (
        _with_flat('createType="exotic"\nRW 2048 FLAT "d-flat.vmdk" 0\n'),
        "unknown VMDK createType",
    ),
    "no-extents": (_descriptor('createType="monolithicFlat"\n'), "lists no extents"),
    "extent-without-file": (_descriptor('createType="monolithicFlat"\nRW 2048 FLAT\n'), "extent line without a file"),
    "missing-extent": (_missing_extent, "missing extent gone-flat.vmdk"),
    "noaccess-extent": (_with_flat('createType="monolithicFlat"\nNOACCESS 2048 FLAT "d-flat.vmdk" 0\n'), "NOACCESS"),
    "unsupported-extent-type": (
        _with_flat('createType="vmfsSparse"\nRW 2048 VMFSSPARSE "d-flat.vmdk"\n'),
        "extent type VMFSSPARSE",
    ),
    "corrupt-sparse-header": (_corrupt_sparse, "unsupported VMDK sparse version 9"),
}
# Hostile input rather than a disk to plan: plan itself refuses, with one line naming the path.
CONFINEMENT: dict[str, tuple[Callable[[Path], None], str]] = {
    "absolute-extent": (_descriptor('createType="monolithicFlat"\nRW 2048 FLAT "/etc/shadow" 0\n'), "is absolute"),
    "dotdot-extent": (_descriptor('createType="monolithicFlat"\nRW 2048 FLAT "../x-flat.vmdk" 0\n'), "escapes"),
    "symlink-out-of-folder": (_symlinked_extent, "outside the disk's folder"),
}


def _vm(tmp_path: Path, make: Callable[[Path], None]) -> Path:
    """A VM folder whose one disk ``d.vmdk`` is made by ``make``; returns its VMX."""
    folder = tmp_path / "vm"
    folder.mkdir()
    make(folder)
    vmx = folder / "vm.vmx"
    vmx.write_text('memsize = "256"\nscsi0.present = "TRUE"\nscsi0:0.present = "TRUE"\nscsi0:0.fileName = "d.vmdk"\n')
    return vmx


def _engine_refusal(vmx: Path, tmp_path: Path) -> str:
    """What the disk engine says when convert hands it the disk."""
    with pytest.raises(DiskError) as refused:
        transfer_disks([DiskJob("d", LocalSource(vmx.parent / "d.vmdk"), tmp_path / "d.img")], progress="none")
    assert not (tmp_path / "d.img").exists()
    return refused.value.message


def _concerns(vmx: Path) -> list:  # type: ignore[type-arg]
    inventory = open_source(f"vmx:{vmx}").inventory()
    return build_plan(inventory.vms, Maps(), PlanOptions(name="p", source=inventory.source_url)).vms[0].concerns


@pytest.mark.parametrize("kind", sorted(CONFINEMENT))
def test_a_descriptor_naming_files_outside_its_folder_is_refused_by_plan(kind: str, tmp_path: Path) -> None:
    make, fragment = CONFINEMENT[kind]
    vmx = _vm(tmp_path, make)
    with pytest.raises(InputError) as planned:
        open_source(f"vmx:{vmx}").inventory()
    assert fragment in planned.value.message and "\n" not in planned.value.message
    assert _engine_refusal(vmx, tmp_path) == f"disk d: {planned.value.message}"  # one parser: the same line


@pytest.mark.parametrize("kind", sorted(REFUSALS))
def test_what_convert_refuses_is_critical_at_plan_time(kind: str, tmp_path: Path) -> None:
    make, fragment = REFUSALS[kind]
    vmx = _vm(tmp_path, make)
    [concern] = [c for c in _concerns(vmx) if c.id == "disk-not-convertible"]
    assert concern.severity is Severity.CRITICAL
    assert fragment in concern.message and "\n" not in concern.message
    refused = _engine_refusal(vmx, tmp_path)  # ... and it is the very refusal convert's disk engine gives
    assert fragment in refused and refused.split(": ", 1)[1] in concern.message


def test_a_clean_vmdk_has_no_such_concern(tmp_path: Path) -> None:
    def clean(folder: Path) -> None:
        subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", str(folder / "d.vmdk"), "8M"], check=True)

    assert "disk-not-convertible" not in [c.id for c in _concerns(_vm(tmp_path, clean))]
