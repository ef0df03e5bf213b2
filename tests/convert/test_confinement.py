"""A hostile descriptor reads nothing outside its VM's folder (issue 12).

Each kind of descriptor (OVF href, OVA member, VMX fileName, VMX snapshot file, VMDK extent
seen by plan, a hand-edited plan) names a file standing for a host secret, directly, through
``..`` or through a symlink: ``plan`` and ``convert`` refuse with one line naming the path,
and no image is written. ESXi ``/vmfs/volumes/DS/...`` paths work only through ``--datastore-dir``.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import SAMPLES_OVF
from tests.convert.helpers import images_equal, make_vmdk, migrator, write_vmx

SAMPLE = SAMPLES_OVF / "CentOS__centos.ovf"  # one disk: ovf:href="centos-disk1.vmdk"
SECRET = b"root:$6$not-really-a-hash:19000:0:99999:7:::\n" * 64


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file outside every VM folder, standing for a host secret such as /etc/shadow."""
    path = tmp_path / "host" / "shadow"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    return path


def _no_image(out: Path) -> None:
    images = [p for p in out.rglob("*") if p.suffix in (".img", ".qcow2", ".raw")] if out.exists() else []
    assert images == [], images
    found = [p for p in out.rglob("*") if p.is_file() and SECRET[:40] in p.read_bytes()] if out.exists() else []
    assert found == [], found


def _one_line_refusal(result, needle: str) -> None:  # type: ignore[no-untyped-def]
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert needle in lines[0] and "internal error" not in lines[0], lines[0]


def _ovf_naming(folder: Path, href: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    descriptor = folder / "centos.ovf"
    descriptor.write_text(SAMPLE.read_text().replace('ovf:href="centos-disk1.vmdk"', f'ovf:href="{href}"'))
    return descriptor


def test_ovf_href_to_etc_shadow_is_refused(tmp_path: Path) -> None:
    """The Acceptance: ovf:href="/etc/shadow" → convert exits non-zero with one line, writes no image."""
    descriptor = _ovf_naming(tmp_path / "vm", "/etc/shadow")
    out = tmp_path / "out"
    result = migrator("convert", "--source", f"ovf:{descriptor}", "--vm", "centos", "--output-dir", str(out))
    _one_line_refusal(result, "/etc/shadow")
    _no_image(out)


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_ovf_href_outside_its_folder(tmp_path: Path, secret: Path, how: str) -> None:
    folder = tmp_path / "vm"
    folder.mkdir()
    if how == "symlink":
        (folder / "link-disk.vmdk").symlink_to(secret)
        href = "link-disk.vmdk"
    else:
        href = str(secret) if how == "absolute" else os.path.relpath(secret, folder)
    descriptor = _ovf_naming(folder, href)
    out = tmp_path / "out"
    for command in (
        ["plan", "--source", f"ovf:{descriptor}", "--output-file", "-"],
        ["convert", "--source", f"ovf:{descriptor}", "--vm", "centos", "--output-dir", str(out)],
    ):
        result = migrator(*command)
        _one_line_refusal(result, href)
        assert SECRET[:20].decode() not in result.stdout + result.stderr
    _no_image(out)


def test_ovf_href_inside_its_folder_still_converts(tmp_path: Path) -> None:
    """Confinement refuses only what is outside: a subfolder and a symlink within the folder are fine."""
    folder = tmp_path / "vm"
    (folder / "disks").mkdir(parents=True)
    vmdk = make_vmdk(folder / "disks" / "real.vmdk", "8M", 0x33, "streamOptimized")
    (folder / "alias.vmdk").symlink_to(vmdk)
    descriptor = _ovf_naming(folder, "alias.vmdk")
    out = tmp_path / "out"
    result = migrator("convert", "--source", f"ovf:{descriptor}", "--vm", "centos", "--output-dir", str(out))
    assert result.returncode == 0, result.stderr
    assert images_equal(vmdk, out / "centos-disk-0.img")


def _ova(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes]) -> Path:
    import io

    with tarfile.open(path, "w") as tar:
        for info in members:
            payload = data.get(info.name)
            if payload is not None:
                info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return path


@pytest.mark.parametrize("how", ["symlink-member", "absolute-name", "dotdot-name"])
def test_ova_member_outside_or_a_link_is_refused(tmp_path: Path, secret: Path, how: str) -> None:
    href = {"symlink-member": "centos-disk1.vmdk", "absolute-name": str(secret), "dotdot-name": "../host/shadow"}[how]
    descriptor = SAMPLE.read_bytes().replace(b'ovf:href="centos-disk1.vmdk"', f'ovf:href="{href}"'.encode())
    ovf = tarfile.TarInfo("centos.ovf")
    disk = tarfile.TarInfo(href.lstrip("/"))
    if how == "symlink-member":
        disk.type, disk.linkname = tarfile.SYMTYPE, str(secret)
    ova = _ova(
        tmp_path / "vm.ova",
        [ovf, disk],
        {"centos.ovf": descriptor, **({} if how == "symlink-member" else {disk.name: SECRET})},
    )
    out = tmp_path / "out"
    result = migrator("convert", "--source", f"ova:{ova}", "--vm", "centos", "--output-dir", str(out))
    _one_line_refusal(result, href)
    _no_image(out)


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_vmx_filename_outside_its_folder(tmp_path: Path, secret: Path, how: str) -> None:
    folder = tmp_path / "vm"
    folder.mkdir()
    if how == "symlink":
        (folder / "link-flat.vmdk").symlink_to(secret)
        name = "link-flat.vmdk"
    else:
        name = str(secret) if how == "absolute" else os.path.relpath(secret, folder)
    vmx = write_vmx(folder / "web.vmx", "web", [name])
    out = tmp_path / "out"
    for command in (
        ["plan", "--source", f"vmx:{vmx}", "--output-file", "-"],
        ["convert", "--source", f"vmx:{vmx}", "--vm", "web", "--output-dir", str(out)],
    ):
        _one_line_refusal(migrator(*command), name)
    _no_image(out)


def test_vmdk_descriptor_extent_outside_is_refused_by_plan(tmp_path: Path, secret: Path) -> None:
    folder = tmp_path / "vm"
    folder.mkdir()
    (folder / "web.vmdk").write_text(
        '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n'
        f'RW 16 FLAT "{os.path.relpath(secret, folder)}" 0\n'
    )
    vmx = write_vmx(folder / "web.vmx", "web", ["web.vmdk"])
    _one_line_refusal(migrator("plan", "--source", f"vmx:{vmx}", "--output-file", "-"), "shadow")


def test_vmx_snapshot_file_outside_is_refused(tmp_path: Path, secret: Path) -> None:
    folder = tmp_path / "vm"
    folder.mkdir()
    make_vmdk(folder / "web.vmdk")
    vmx = write_vmx(folder / "web.vmx", "web", ["web.vmdk"])
    vmx.write_text(vmx.read_text() + f'checkpoint.vmsdFileName = "{secret}"\n')
    result = migrator("plan", "--source", f"vmx:{vmx}", "--output-file", "-")
    _one_line_refusal(result, str(secret))
    assert SECRET[:20].decode() not in result.stderr


def test_esxi_datastore_paths_need_an_explicit_map(tmp_path: Path) -> None:
    """/vmfs/volumes/DS/... is found through --datastore-dir DS=DIR (plan and convert), never followed as is."""
    datastore = tmp_path / "datastore1-copy"
    (datastore / "web").mkdir(parents=True)
    vmdk = make_vmdk(datastore / "web" / "web.vmdk", "8M", 0x44)
    folder = tmp_path / "vm"
    folder.mkdir()
    vmx = write_vmx(folder / "web.vmx", "web", ["/vmfs/volumes/datastore1/web/web.vmdk"])
    out = tmp_path / "out"
    unmapped = migrator("convert", "--source", f"vmx:{vmx}", "--vm", "web", "--output-dir", str(out))
    _one_line_refusal(unmapped, "--datastore-dir datastore1=DIR")
    _no_image(out)

    mapping = ["--datastore-dir", f"datastore1={datastore}"]
    plan_file = tmp_path / "plan.yaml"
    planned = migrator("plan", "--source", f"vmx:{vmx}", *mapping, "--output-file", str(plan_file), "-o", "json")
    assert planned.returncode == 0, planned.stderr
    disk = yaml.safe_load(plan_file.read_text())["vms"][0]["disks"][0]
    assert disk["capacity_bytes"] == 8 << 20  # read through the map
    assert disk["source_file"] == "/vmfs/volumes/datastore1/web/web.vmdk"
    converted = migrator("convert", "--plan", str(plan_file), "--vm", "web", *mapping, "--output-dir", str(out))
    assert converted.returncode == 0, converted.stderr
    assert images_equal(vmdk, out / "web-disk-0.img")

    # a symlink in the mapped datastore that leaves it is refused like any other
    (datastore / "web" / "escape.vmdk").symlink_to(tmp_path / "vm" / "web.vmx")
    vmx2 = write_vmx(folder / "web2.vmx", "web2", ["/vmfs/volumes/datastore1/web/escape.vmdk"])
    _one_line_refusal(migrator("plan", "--source", f"vmx:{vmx2}", *mapping, "--output-file", "-"), "escape.vmdk")


def test_hand_edited_plan_naming_a_host_file_is_refused(tmp_path: Path, secret: Path) -> None:
    """A plan names the disks it was made with: convert confines them again to the descriptor's folder."""
    folder = tmp_path / "vm"
    folder.mkdir()
    make_vmdk(folder / "web.vmdk")
    vmx = write_vmx(folder / "web.vmx", "web", ["web.vmdk"])
    plan_file = tmp_path / "plan.yaml"
    assert migrator("plan", "--source", f"vmx:{vmx}", "--output-file", str(plan_file)).returncode == 0
    plan = yaml.safe_load(plan_file.read_text())
    plan["vms"][0]["disks"][0]["source_file"] = str(secret)
    plan_file.write_text(yaml.safe_dump(plan))
    out = tmp_path / "out"
    result = migrator("convert", "--plan", str(plan_file), "--vm", "web", "--output-dir", str(out))
    _one_line_refusal(result, str(secret))
    _no_image(out)
    shutil.rmtree(out, ignore_errors=True)
