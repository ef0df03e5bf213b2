"""Windows guests: the plan-time concern, convert's refusal, and VIRTIO_WIN on its way to virt-v2v."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from converters.guest import ConversionRequest, GuestDisk
from converters.guest.virtv2v import in_place_command, libguestfs_env
from migrator.convert.guest import GuestOptions, conversion_request
from tests.planning.cli import run_migrator
from tests.planning.factory import ids, make_vm, plan_of

WINDOWS_VMX = """\
.encoding = "UTF-8"
displayName = "win2019"
guestOS = "windows2019srv-64"
memSize = "4096"
numvcpus = "2"
scsi0.present = "TRUE"
scsi0.virtualDev = "lsisas1068"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "win2019.vmdk"
ethernet0.present = "TRUE"
ethernet0.virtualDev = "e1000e"
ethernet0.addressType = "static"
ethernet0.address = "00:50:56:01:02:03"
ethernet0.pciSlotNumber = "192"
"""


def windows_vmx(tmp_path: Path) -> Path:
    (tmp_path / "win2019.vmdk").write_text(
        '# Disk DescriptorFile\nversion=1\ncreateType="monolithicFlat"\nRW 2048 FLAT "win2019-flat.vmdk" 0\n'
    )
    (tmp_path / "win2019-flat.vmdk").write_bytes(b"\0" * 2048 * 512)
    vmx = tmp_path / "win2019.vmx"
    vmx.write_text(WINDOWS_VMX)
    return vmx


def test_rule_fires_for_windows_without_virtio_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIRTIO_WIN", raising=False)
    planned = plan_of(make_vm(guest_id="windows2019srv_64Guest")).vms[0]
    concern = next(c for c in planned.concerns if c.id == "windows-virtio-drivers")
    assert concern.severity.value == "Critical"
    assert "VIRTIO_WIN" in concern.message and "--skip-conversion" in concern.message
    assert "windows-virtio-drivers" in ids(make_vm(guest_name="Microsoft Windows Server 2019 (64-bit)"))


def test_rule_quiet_with_virtio_win_or_for_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIRTIO_WIN", "/srv/virtio-win.iso")
    assert "windows-virtio-drivers" not in ids(make_vm(guest_id="windows2019srv_64Guest"))
    monkeypatch.delenv("VIRTIO_WIN")
    assert "windows-virtio-drivers" not in ids(make_vm(guest_id="debian12_64Guest"))


def test_plan_on_a_windows_vmx_shows_the_critical_concern(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIRTIO_WIN", raising=False)
    vmx = windows_vmx(tmp_path)
    result = run_migrator("plan", "--source", f"vmx:{vmx}", "-o", "json", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    concerns = json.loads(result.stdout)["vms"][0]["concerns"]
    assert {"id": "windows-virtio-drivers", "severity": "Critical"}.items() <= next(
        c for c in concerns if c["id"] == "windows-virtio-drivers"
    ).items()


def test_convert_refuses_windows_without_virtio_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIRTIO_WIN", raising=False)
    monkeypatch.delenv("MIGRATOR_SKIP_CONVERSION", raising=False)  # the suite's default: converting for real
    vmx = windows_vmx(tmp_path)
    out = tmp_path / "out"
    result = run_migrator(
        "convert", "--source", f"vmx:{vmx}", "--vm", "win2019", "--output-dir", str(out), cwd=tmp_path
    )
    assert result.returncode == 3
    assert "windows-virtio-drivers" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (out / "win2019-disk-0.img").exists()  # refused before anything was copied


def test_skip_conversion_is_the_users_choice_for_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIRTIO_WIN", raising=False)
    vmx = windows_vmx(tmp_path)
    out = tmp_path / "out"
    args = ["convert", "--source", f"vmx:{vmx}", "--vm", "win2019", "--output-dir", str(out), "--skip-conversion"]
    result = run_migrator(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    vm_yaml = (out / "win2019-vm.yaml").read_text()
    assert "bus: virtio" not in vm_yaml and "model: e1000e" in vm_yaml  # the source's kind of devices, no virtio
    assert not (out / ".migrator" / "inspection-win2019.json").exists()


def test_virtio_win_reaches_virt_v2v(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """VIRTIO_WIN from the environment (or the option) is in the environment virt-v2v-in-place runs with."""
    from migrator.convert import plans
    from migrator.convert.disks import planned_transfers
    from migrator.sources.vmx import VmxSource

    drivers = tmp_path / "virtio-win"
    drivers.mkdir()
    monkeypatch.setenv("VIRTIO_WIN", str(drivers))
    vmx = windows_vmx(tmp_path)
    inventory = VmxSource(vmx).inventory()
    plan = plans.one_vm_plan(inventory, "win2019", source=f"vmx:{vmx}", namespace="default")
    planned = plan.vms[0]
    assert "windows-virtio-drivers" not in planned.critical_ids()
    request = conversion_request(
        planned, planned_transfers(planned, tmp_path, "raw"), tmp_path, GuestOptions(accelerator="tcg")
    )
    assert request.windows and request.virtio_win == str(drivers)
    env = libguestfs_env(request.accelerator, request.virtio_win)
    assert env["VIRTIO_WIN"] == str(drivers)
    assert env["LIBGUESTFS_BACKEND_SETTINGS"] == "force_tcg"
    argv = in_place_command(request, tmp_path / "win.xml")
    assert argv[:4] == ["virt-v2v-in-place", "-v", "-i", "libvirtxml"] and "--root" in argv


def test_kvm_runs_libguestfs_without_force_tcg() -> None:
    request = ConversionRequest(name="x", disks=(GuestDisk(Path("/x.img")),), accelerator="kvm")
    env = libguestfs_env(request.accelerator)
    assert env["LIBGUESTFS_BACKEND"] == "direct" and "LIBGUESTFS_BACKEND_SETTINGS" not in env
