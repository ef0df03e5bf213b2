"""converters.guest without an appliance: the domain XML, VMware NIC names, reading virt-v2v's output,
and the crash-safe commit of a finished conversion (real qemu-img on small images)."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

from converters.guest import ConversionRequest, GuestDisk, GuestNic, convert_guest, recorded, vmware_interface_name
from converters.guest.convert import _overlays, _write_state
from converters.guest.domain import domain_xml
from converters.guest.model import Inspection
from converters.guest.netnames import parse_pins, pin_script
from converters.guest.virtv2v import V2vOutput

# Lines as virt-v2v-in-place 2.2 -v prints them (interleaved with the appliance's kernel and libguestfs)
V2V_LINES = """\
[   0.0] Setting up the source: -i libvirtxml /out/.migrator/guest/web.xml
[   1.0] Opening the source
[    0.000000] Linux version 6.1.0-57-amd64
[  25.4] Inspecting the source
i_root = /dev/sda1
i_type = linux
i_distro = debian
i_osinfo = debian12
i_arch = x86_64
i_major_version = 12
i_minor_version = 15
i_product_name = 12.15
i_firmware = BIOS
[  38.3] Converting 12.15 to run on KVM
guestfsd: error: Can't locate Bootloader/Tools.pm in @INC /usr/lvirt-v2v-in-place: warning: could not determine a way \
to update the configuration of Grub2
commandrvf: dpkg --purge open-vm-tools
gcaps_block_bus = virtio-blk
gcaps_net_bus = virtio-net
gcaps_virtio_rng = true
gcaps_isa_pvpanic = false
[ 152.3] Mapping filesystem data to avoid copying unused and blank areas
[ 157.2] Finishing off
"""


def test_domain_xml_names_the_copied_images_as_the_source_had_them(tmp_path: Path) -> None:
    request = ConversionRequest(
        name="web",
        disks=(GuestDisk(tmp_path / "a.img"), GuestDisk(tmp_path / "b.img", source_bus="sata")),
        nics=(
            GuestNic("00:50:56:01:02:03", "vmxnet3", "ens192", "VM Network"),
            GuestNic("00:50:56:01:02:04", "vlance"),
        ),
        memory_mib=2048,
        vcpus=2,
        firmware="efi",
    )
    root = ET.fromstring(domain_xml(request, [tmp_path / "a.qcow2", tmp_path / "b.qcow2"]))
    assert root.findtext("name") == "web" and root.findtext("memory") == "2048" and root.findtext("vcpu") == "2"
    assert root.find("os").get("firmware") == "efi"
    disks = root.findall("devices/disk")
    assert [d.find("source").get("file") for d in disks] == [str(tmp_path / "a.qcow2"), str(tmp_path / "b.qcow2")]
    assert [d.find("driver").get("type") for d in disks] == ["qcow2", "qcow2"]
    assert [(d.find("target").get("dev"), d.find("target").get("bus")) for d in disks] == [
        ("sda", "scsi"),
        ("sda", "sata"),
    ] or [(d.find("target").get("bus")) for d in disks] == ["scsi", "sata"]
    nics = root.findall("devices/interface")
    assert [n.find("mac").get("address") for n in nics] == ["00:50:56:01:02:03", "00:50:56:01:02:04"]
    assert [n.find("model").get("type") for n in nics] == ["vmxnet3", "e1000"]


def test_vmware_names_nics_after_their_pci_slot() -> None:
    assert vmware_interface_name(192) == "ens192"
    assert vmware_interface_name(160) == "ens160"
    assert vmware_interface_name(None) is None and vmware_interface_name(0) is None


def test_pin_script_pins_only_configured_names(tmp_path: Path) -> None:
    root = tmp_path / "root"
    script = pin_script([("00:50:56:01:02:03", "ens192"), ("00:50:56:01:02:04", "ens224")], root=str(root))
    (root / "etc/network").mkdir(parents=True)
    (root / "usr/lib/systemd/network").mkdir(parents=True)
    (root / "etc/fstab").write_text("UUID=5f0c6a8e-2b1d-4c3e-9a7f-0d1e2f3a4b5c / ext4 defaults 0 1\n")
    (root / "etc/network/interfaces").write_text("auto ens192\niface ens192 inet static\n    address 192.0.2.10/24\n")
    output = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout
    pins, warnings = parse_pins(output)
    assert [(p.mac, p.name, p.method, p.configured_in) for p in pins] == [
        ("00:50:56:01:02:03", "ens192", "systemd-link", ["/etc/network/interfaces"])
    ]
    assert len(warnings) == 1 and "ens224" in warnings[0]
    link = (root / "etc/systemd/network/10-migrator-ens192.link").read_text()
    assert "MACAddress=00:50:56:01:02:03" in link and "Name=ens192" in link and "Type=ether" in link
    assert not (root / "etc/systemd/network/10-migrator-ens224.link").exists()


def test_virt_v2v_output_gives_the_inspection_and_phases() -> None:
    parsed = V2vOutput()
    phases = [p for line in V2V_LINES.splitlines() if (p := parsed.feed(line))]
    assert [p.text.split()[0] for p in phases] == [
        "Setting",
        "Opening",
        "Inspecting",
        "Converting",
        "Mapping",
        "Finishing",
    ]
    inspection = parsed.inspection("web")
    assert (inspection.os_type, inspection.distro, inspection.osinfo, inspection.major_version) == (
        "linux",
        "debian",
        "debian12",
        12,
    )
    assert inspection.display_name == "Debian 12.15" and inspection.firmware == "bios"
    assert inspection.virtio_ready and inspection.drivers == ["virtio-blk", "virtio-net", "virtio-rng"]
    assert inspection.removed == ["open-vm-tools"]
    assert inspection.warnings == ["could not determine a way to update the configuration of Grub2"]
    assert inspection.seconds["inspection"] == 12.9 and inspection.seconds["appliance_start"] == 24.4
    assert parsed.reason() is None


def test_virt_v2v_reason_is_one_line() -> None:
    parsed = V2vOutput()
    for line in [
        "[  20.1] Inspecting the source",
        "virt-v2v-in-place: error: inspection could not detect the source guest (or ",
        "physical machine).",
        "",
        "If reporting bugs, run virt-v2v with debugging enabled and include the ",
        "complete output:",
    ]:
        parsed.feed(line)
    assert parsed.reason() == "inspection could not detect the source guest (or physical machine)."


def _raw(path: Path, fill: bytes) -> None:
    path.write_bytes(fill * (1 << 20))


def test_a_conversion_killed_while_committing_is_committed_again(tmp_path: Path) -> None:
    """State "committing": the overlays hold a finished conversion; a re-run commits them (again) and is done."""
    image = tmp_path / "disk.img"
    _raw(image, b"\0")
    request = ConversionRequest(name="web", disks=(GuestDisk(image),), state_dir=tmp_path / "state")
    overlay = _overlays(request)[0]
    overlay.parent.mkdir(parents=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(image), str(overlay)], check=True)
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", "write -P 0x42 0 64k", str(overlay)], check=True, capture_output=True
    )
    inspection = Inspection(vm="web", distro="debian", major_version=12, block_bus="virtio-blk", net_bus="virtio-net")
    _write_state(request, {"phase": "committing", "inspection": inspection.to_dict()})
    assert image.read_bytes()[:4] == b"\0\0\0\0"  # nothing committed yet

    events: list[str] = []
    again = convert_guest(request, lambda e: events.append(e.phase))
    assert again.distro == "debian" and events[0].startswith("Committing")
    assert image.read_bytes()[:65536] == b"\x42" * 65536 and not overlay.exists()
    assert json.loads((tmp_path / "state" / "guest-web.json").read_text())["phase"] == "done"
    assert recorded(request) is not None
    # done: a third run touches nothing
    stamp = image.stat().st_mtime_ns
    assert convert_guest(request, lambda e: events.append(e.phase)).distro == "debian"
    assert events[-1] == "already converted" and image.stat().st_mtime_ns == stamp


def test_the_images_copied_again_are_converted_again(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    _raw(image, b"\0")
    request = ConversionRequest(name="web", disks=(GuestDisk(image),), state_dir=tmp_path / "state")
    _write_state(request, {"phase": "done", "inspection": Inspection(vm="web").to_dict(), "images": [[1, 2]]})
    assert recorded(request) is None  # the stamp no longer matches the image


def test_the_pinning_finds_a_lone_linux_partition_as_the_appliance_names_it() -> None:
    from converters.guest.rootfs import RootPartition, root_from_tables

    def table(device: str, *parts: tuple[int, str]) -> dict[str, object]:
        partitions = [{"node": f"{device}{n}", "type": kind, "start": 2048 * n} for n, kind in parts]
        return {"partitiontable": {"device": device, "sectorsize": 512, "partitions": partitions}}

    def device(tables: list[dict[str, object] | None]) -> str | None:
        found = root_from_tables(tables)
        return found.device if found else None

    assert root_from_tables([table("/i/a.raw", (1, "83"))]) == RootPartition(0, 1, 2048 * 512)
    # a swap partition beside it, a data disk without Linux partitions: still the one root
    gpt_root = "4F68BCE3-E8CD-4C2D-AA1F-A1AB5CDB8B6A"
    assert device([table("/i/a.raw", (1, "82"), (2, gpt_root)), table("/i/b.raw", (1, "7"))]) == "/dev/sda2"
    assert root_from_tables([table("/i/a.raw", (1, "7")), table("/i/b.raw", (3, "83"))]) == RootPartition(
        1, 3, 3 * 2048 * 512
    )
    # anything that needs libguestfs's inspection: a separate /boot, LVM, no partition table
    assert root_from_tables([table("/i/a.raw", (1, "83"), (2, "83"))]) is None
    assert root_from_tables([table("/i/a.raw", (1, "83"), (2, "8e"))]) is None
    assert root_from_tables([table("/i/a.raw", (1, "83")), None]) is None


def test_pin_lines_keep_file_names_with_spaces() -> None:
    line = (
        "MIGRATOR-PIN 00:50:56:01:02:03 ens224 systemd-link /etc/NetworkManager/system-connections/Wired connection 1"
    )
    pins, warnings = parse_pins(line + "\n")
    assert [p.configured_in for p in pins] == [["/etc/NetworkManager/system-connections/Wired connection 1"]]
    assert warnings == []


def test_the_pin_script_refuses_a_filesystem_that_is_not_a_root(tmp_path: Path) -> None:
    from converters.guest.netnames import NOT_ROOT

    script = tmp_path / "pin.sh"
    script.write_text(pin_script([("00:50:56:8a:3c:19", "ens192")], root=str(tmp_path / "boot")))
    (tmp_path / "boot").mkdir()
    done = subprocess.run(["sh", str(script)], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == NOT_ROOT
