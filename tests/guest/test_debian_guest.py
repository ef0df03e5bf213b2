"""The real thing: a VMware-shaped Debian 12 guest converted by virt-v2v, booted on the local runtime.

Slow (TCG): one shared conversion (conftest.converted, with a kill -9 in the middle), one boot of
it, one unconverted boot that must fail, and one cutover from the simulator.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from pyVmomi import vim

from core.wait import wait_until
from migrator import simulator
from migrator.simulator import seed
from migrator.simulator.seed import wait_for_task
from testbed.debian_guest import MARKER, REPORT_LINE, DebianGuest
from testbed.demo import seed_guest_vm
from tests.guest.conftest import CLAIM, VM, Converted, guest_env, migrator

pytestmark = pytest.mark.slow
BOOT_TIMEOUT = 420.0
NO_ROOT = ("Gave up waiting for root", "ALERT!")


@dataclass
class Report:
    root: str
    nics: dict[str, tuple[str, str]]  # name → (mac, addresses)
    drivers: set[str]
    open_vm_tools: str
    system: str


def parse_report(console: str) -> Report:
    text = console[console.rindex(REPORT_LINE) :]
    text = text[: text.index(MARKER)]
    lines = [re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", line).strip() for line in text.splitlines()]
    nics: dict[str, tuple[str, str]] = {}
    root = drivers = tools = system = ""
    for line in lines:
        word, _, rest = line.partition(" ")
        if word == "ROOT":
            root = rest
        elif word == "NIC":
            name, mac, addresses = rest.split()
            nics[name] = (mac, addresses)
        elif word == "DRIVERS":
            drivers = rest
        elif word == "OPEN-VM-TOOLS":
            tools = rest
        elif word == "SYSTEM":
            system = rest
    return Report(root, nics, set(drivers.split(",")), tools, system)


class Booted:
    """`migrator runtime run --detach OUT`, then its console; stopped on exit."""

    def __init__(self, out: Path, base: Path) -> None:
        self.out, self.env = out, guest_env(base)
        self.console_log = base / "runtime" / VM / "console.log"

    def __enter__(self) -> Booted:
        started = migrator("runtime", "run", "--detach", str(self.out), env=self.env, timeout=600)
        assert started.returncode == 0, started.stderr
        return self

    def wait_for(self, needles: tuple[str, ...], timeout: float = BOOT_TIMEOUT) -> str | None:
        def found() -> str | None:
            console = self.console()
            return next((n for n in needles if n in console), None)

        return wait_until(found, timeout=timeout, interval=1)

    def console(self) -> str:
        return self.console_log.read_text(errors="replace") if self.console_log.exists() else ""

    def __exit__(self, *exc: object) -> None:
        migrator("runtime", "stop", VM, "--timeout", "240", env=self.env, timeout=300)


def test_kill_9_during_conversion_never_leaves_a_half_converted_image(converted: Converted) -> None:
    assert converted.killed.returncode == -9, converted.killed.stderr
    assert "Pinning NIC names" in converted.killed.stderr  # the overlay had been written to
    # the image was never written while the killed run converted it: only its overlay was
    assert converted.images_before_kill and converted.images_before_kill == converted.images_after_kill
    assert json.loads(converted.state_after_kill)["phase"] == "converting"
    # virt-v2v died with the run (setpriv --pdeathsig); what it left serving the overlay, the re-run stopped
    assert not [c for c in converted.lingering_after_kill if "virt-v2v" in c], converted.lingering_after_kill
    assert converted.lingering_after_rerun == []
    # the re-run started over (it did not trust the interrupted overlay) and finished the job
    rerun = converted.finished.stderr
    assert "already converted, skipped" in rerun  # the copied disk itself was complete
    assert "Pinning NIC names" in rerun and "Committing the converted disks" in rerun
    assert not list((converted.out / ".migrator" / "guest").glob("*.qcow2"))  # overlays committed, then gone


def test_inspection_names_debian_12(converted: Converted) -> None:
    inspection = json.loads((converted.out / ".migrator" / f"inspection-{VM}.json").read_text())
    assert (inspection["os_type"], inspection["distro"], inspection["major_version"]) == ("linux", "debian", 12)
    assert inspection["osinfo"] == "debian12" and inspection["firmware"] == "bios"
    assert inspection["block_bus"] == "virtio-blk" and inspection["net_bus"] == "virtio-net"
    assert "open-vm-tools" in inspection["removed"]
    assert [(p["name"], p["mac"]) for p in inspection["nic_pins"]] == [("ens192", "00:50:56:8a:3c:19")]
    assert inspection["nic_pins"][0]["configured_in"] == ["/etc/network/interfaces"]
    vm = yaml.safe_load((converted.out / f"{VM}-vm.yaml").read_text())
    domain = vm["spec"]["template"]["spec"]["domain"]
    assert [d["disk"]["bus"] for d in domain["devices"]["disks"] if "disk" in d] == ["virtio"]
    assert [i["model"] for i in domain["devices"]["interfaces"]] == ["virtio"]
    assert vm["metadata"]["labels"]["os.template.kubevirt.io/debian12"] == "true"
    assert vm["metadata"]["annotations"]["name.os.template.kubevirt.io/debian12"].startswith("Debian 12")
    status = migrator("status", "--output-dir", str(converted.out), env=guest_env(converted.base))
    assert status.returncode == 0 and "Debian 12" in status.stdout and "ens192" in status.stdout, status


def test_converted_guest_boots_on_virtio_and_keeps_its_network_identity(
    converted: Converted, booted_copy: Path, tmp_path: Path, debian_guest: DebianGuest
) -> None:
    with Booted(booted_copy, tmp_path) as booted:
        found = booted.wait_for((MARKER, *NO_ROOT))
        assert found == MARKER, booted.console()[-3000:]
        report = parse_report(booted.console())
    assert report.root == "/dev/vda1 /dev/vda1", report  # found by UUID on the virtio disk
    assert {"virtio_blk", "virtio_net"} <= report.drivers and "vmxnet3" not in report.drivers
    assert report.nics == {"ens192": (debian_guest.mac, debian_guest.address)}  # old name, same MAC, static IP
    assert report.open_vm_tools == "absent"
    assert report.system in ("running", "degraded")  # multi-user reached


def test_skip_conversion_does_not_boot(guest_vmx: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ("convert", "--source", f"vmx:{guest_vmx}", "--vm", VM, "--output-dir", str(out), "--skip-conversion")
    result = migrator(*args, env=guest_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert not (out / ".migrator" / f"inspection-{VM}.json").exists()
    # an initramfs shell ignores the ACPI power button: a short grace period before the guest is destroyed
    vm_file = out / f"{VM}-vm.yaml"
    vm = yaml.safe_load(vm_file.read_text())
    vm["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 5
    vm_file.write_text(yaml.safe_dump(vm))
    with Booted(out, tmp_path) as booted:
        found = booted.wait_for((MARKER, *NO_ROOT))
        assert found in NO_ROOT, booted.console()[-3000:]  # the initramfs has no virtio_blk: no root device
        assert MARKER not in booted.console()


@pytest.fixture
def sim_with_guest(
    fresh_vcsim: simulator.Simulator, debian_guest: DebianGuest
) -> Iterator[tuple[simulator.Simulator, str]]:
    """vcsim's DC0_H0_VM0, renamed ``g<run>-debian`` with a BIOS UUID of its own (the system libvirtd is shared
    with the rest of the suite, which `make test` runs beside tests/guest, and with other checkouts' runs), the
    Debian guest's VMDK uploaded, its NIC in PCI slot 192 with the guest's MAC."""
    name = f"g{uuid.uuid4().hex[:4]}-debian"
    with seed.session(fresh_vcsim) as source:
        vm = source.find_vm("DC0_H0_VM0")
        wait_for_task(vm.Rename_Task(newName=name), "rename the guest's VM")
        wait_for_task(vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(uuid=str(uuid.uuid4()))), "give it a UUID")
    seed_guest_vm(fresh_vcsim, name, [debian_guest.vmdk], mac=debian_guest.mac, memory_mib=1024)
    with seed.session(fresh_vcsim) as source:
        vm = source.find_vm(name)
        nic = next(d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualEthernetCard))
        nic.slotInfo = vim.vm.device.VirtualDevice.PciBusSlotInfo(pciSlotNumber=debian_guest.pci_slot)
        edit = vim.vm.device.VirtualDeviceSpec.Operation.edit
        spec = vim.vm.ConfigSpec(deviceChange=[vim.vm.device.VirtualDeviceSpec(operation=edit, device=nic)])
        wait_for_task(vm.ReconfigVM_Task(spec=spec), "put the NIC in PCI slot 192")
    yield fresh_vcsim, name


def test_cutover_from_the_simulator_converts_the_guest(
    sim_with_guest: tuple[simulator.Simulator, str], tmp_path: Path, debian_guest: DebianGuest
) -> None:
    sim, source_vm = sim_with_guest
    target = source_vm  # already a DNS-1123 name
    env = guest_env(tmp_path, MIGRATOR_VSPHERE_PASSWORD=sim.password)
    out = tmp_path / "out"
    args = ["cutover", "--source", sim.source_url(), "--insecure", "--vm", source_vm]
    args += ["--output-dir", str(out), "--verify-marker", MARKER, "--verify-timeout", str(BOOT_TIMEOUT)]
    try:
        result = migrator(*args, env=env, timeout=1800)
        console_log = tmp_path / "runtime" / target / "console.log"
        console = console_log.read_text(errors="replace") if console_log.exists() else ""
        assert result.returncode == 0, result.stdout + result.stderr + console[-2000:]
        report = parse_report(console)
        assert report.nics == {"ens192": (debian_guest.mac, debian_guest.address)}
        assert report.open_vm_tools == "absent" and "virtio_blk" in report.drivers
        status = migrator("status", "--vm", source_vm, "-o", "json", env=env)
        data = json.loads(status.stdout)
        steps = {s["step"]: s for s in data["steps"]}
        assert list(steps)[3:6] == ["transfer", "convert-guest", "start"]
        assert steps["convert-guest"]["status"] == "done" and "Debian 12" in steps["convert-guest"]["detail"]
        assert data["inspection"]["osinfo"] == "debian12"
    finally:
        migrator("runtime", "stop", target, "--timeout", "240", env=env, timeout=300)


def test_a_disk_without_an_os_fails_with_virt_v2vs_reason(tmp_path: Path) -> None:
    """No OS on the disk: one line with virt-v2v's own reason, nothing written beside it, no VM started."""
    from tests.guest.test_windows import WINDOWS_VMX

    vmx_text = WINDOWS_VMX.replace("windows2019srv-64", "debian12-64").replace("win2019", "blank")
    vmx_text = vmx_text.replace('ethernet0.pciSlotNumber = "192"\n', "")  # no NIC name to pin: straight to virt-v2v
    (tmp_path / "blank.vmdk").write_text(
        '# Disk DescriptorFile\nversion=1\ncreateType="monolithicFlat"\nRW 204800 FLAT "blank-flat.vmdk" 0\n'
    )
    with (tmp_path / "blank-flat.vmdk").open("wb") as flat:
        flat.truncate(204800 * 512)
    (tmp_path / "blank.vmx").write_text(vmx_text)
    out = tmp_path / "out"
    args = ("convert", "--source", f"vmx:{tmp_path / 'blank.vmx'}", "--vm", "blank", "--output-dir", str(out))
    result = migrator(*args, env=guest_env(tmp_path))
    assert result.returncode != 0
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "inspection could not detect the source guest" in error[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (out / "blank-vm.yaml").exists() and not (out / ".migrator" / "inspection-blank.json").exists()
    assert CLAIM not in result.stderr
