"""The NIC-name pinning from the host (converters.guest.hostpin), on real ext4 images with real tools:
qemu-img overlays, qemu-storage-daemon's FUSE export, debugfs and e2fsck; and its fallback to the appliance."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from converters.guest import hostpin, rootfs, virtv2v
from converters.guest.convert import _fresh_overlays, _pin_names
from converters.guest.model import ConversionRequest, GuestDisk, GuestNic
from converters.guest.netnames import LINK_FILE, UDEV_FILE

MAC, OTHER_MAC = "00:50:56:8a:3c:19", "00:50:56:8a:3c:20"
PARTITION_START = 1 << 20
needs_host_pinning = pytest.mark.skipif(
    hostpin.unavailable_reason() is not None, reason=str(hostpin.unavailable_reason())
)


def make_disk(path: Path, tree: Path) -> Path:
    """A 64 MiB raw disk: an MBR table with one Linux partition at 1 MiB, ext4 populated from ``tree``."""
    subprocess.run(["truncate", "-s", "64M", str(path)], check=True)
    subprocess.run(["sfdisk", "-q", str(path)], input="start=2048, type=83\n", text=True, check=True)
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-d", str(tree), "-E", f"offset={PARTITION_START}", str(path), "60M"], check=True
    )
    return path


def debian_like_tree(root: Path, *, systemd: bool = True) -> Path:
    (root / "etc/network/interfaces.d").mkdir(parents=True)
    (root / "usr/lib").mkdir(parents=True)
    (root / "etc/os-release").symlink_to("../usr/lib/os-release")
    (root / "usr/lib/os-release").write_text("ID=debian\n")
    (root / "etc/fstab").write_text("UUID=5f0c6a8e-2b1d-4c3e-9a7f-0d1e2f3a4b5c / ext4 defaults 0 1\n")
    (root / "etc/network/interfaces").write_text("auto ens192\niface ens192 inet static\n    address 192.0.2.10/24\n")
    if systemd:
        (root / "usr/lib/systemd/network").mkdir(parents=True)
        (root / "lib").symlink_to("usr/lib")  # merged /usr: the script's /lib/systemd/network is found through it
    return root


def overlay_of(disk: Path) -> Path:
    overlay = disk.with_suffix(".qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(disk), "-F", "raw", str(overlay)], check=True)
    return overlay


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def in_guest(overlay: Path, view: Path, *commands: str) -> str:
    """What debugfs prints for ``commands`` on the overlay's root filesystem (read-only)."""
    with hostpin.raw_view(overlay, view, io.StringIO(), virtv2v.DIE_WITH_US) as raw:
        device = f"{raw}?offset={PARTITION_START}"
        check = subprocess.run(["e2fsck", "-fn", device], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr  # consistent after debugfs's writes
        done = subprocess.run(
            ["debugfs", "-f", "-", device], input="\n".join(commands) + "\n", capture_output=True, text=True
        )
        return done.stdout


def test_listings_and_what_is_mirrored() -> None:
    output = (
        'debugfs: ls -p "/etc/network"\n/185/040755/0/0/.//\n/8194/040755/0/0/..//\n'
        "/192/100644/0/0/interfaces/151/\n/193/040755/0/0/interfaces.d//\n\n"
        'debugfs: ls -p "/etc/netplan"\n'
        'debugfs: ls -p "/etc/NetworkManager/system-connections"\n/3/040700/0/0/.//\n/2/040755/0/0/..//\n'
        "/9/100600/0/0/Wired connection 1.nmconnection/301/\n/10/100600/0/0/.hidden/3/\n"
    )
    listings = hostpin.parse_listings(output)
    assert listings["/etc/netplan"] is None  # does not exist
    assert set(listings["/etc/network"] or {}) == {"interfaces", "interfaces.d"}
    assert hostpin.files_to_mirror(listings) == [
        "/etc/network/interfaces",
        "/etc/NetworkManager/system-connections/Wired connection 1.nmconnection",
    ]
    linked = hostpin.parse_listings('debugfs: ls -p "/etc/netplan"\n/4/120777/0/0/50-cloud-init.yaml/30/\n')
    with pytest.raises(hostpin.HostPinUnavailable, match="not a regular file"):
        hostpin.files_to_mirror(linked)


def test_the_write_commands_make_missing_directories_and_replace_a_file() -> None:
    listings = hostpin.parse_listings(
        'debugfs: ls -p "/etc/systemd"\ndebugfs: ls -p "/etc/udev"\n/1/040755/0/0/.//\n'
        'debugfs: ls -p "/etc/udev/rules.d"\n/1/040755/0/0/.//\n/7/100644/0/0/70-migrator-net.rules/90/\n'
    )
    link = LINK_FILE.format(name="ens192")
    commands = hostpin.write_commands({link: Path("/m/link"), UDEV_FILE: Path("/m/rules")}, listings)
    assert commands[:2] == ['mkdir "/etc/systemd"', 'mkdir "/etc/systemd/network"']
    assert 'rm "70-migrator-net.rules"' in commands and 'rm "10-migrator-ens192.link"' not in commands
    assert 'sif "10-migrator-ens192.link" mode 0100644' in commands and 'mkdir "/etc/udev"' not in commands


def test_only_a_clean_ext_filesystem_is_written() -> None:
    clean = "Filesystem features:      has_journal ext_attr extent\nFilesystem state:         clean\n"
    assert hostpin.clean_ext_filesystem(clean) is None
    dirty = clean.replace("extent", "extent needs_recovery")
    assert "journal needs recovery" in str(hostpin.clean_ext_filesystem(dirty))
    assert "not clean" in str(hostpin.clean_ext_filesystem(clean.replace("clean", "not clean")))
    assert "not an ext2/3/4" in str(hostpin.clean_ext_filesystem("Couldn't find valid filesystem superblock.\n"))


@needs_host_pinning
def test_pins_from_the_host_into_the_overlay_only(tmp_path: Path) -> None:
    tree = debian_like_tree(tmp_path / "tree")
    connections = tree / "etc/NetworkManager/system-connections"
    connections.mkdir(parents=True)
    (connections / "Wired connection 2.nmconnection").write_text("[connection]\ninterface-name=ens224\n")
    disk = make_disk(tmp_path / "disk.raw", tree)
    before = digest(disk)
    root = rootfs.cheap_root((GuestDisk(disk),))
    assert root == rootfs.RootPartition(0, 1, PARTITION_START)
    overlay = overlay_of(disk)
    log = io.StringIO()
    output, _ = hostpin.pin_from_host(
        [(MAC, "ens192"), (OTHER_MAC, "ens224"), ("00:50:56:8a:3c:21", "ens256")],
        overlay,
        root,
        tmp_path / "view",
        log,
        virtv2v.DIE_WITH_US,
    )
    assert f"MIGRATOR-PIN {MAC} ens192 systemd-link /etc/network/interfaces" in output
    assert f"{OTHER_MAC} ens224 systemd-link /etc/NetworkManager/system-connections/Wired connection 2" in output
    assert "ens256 none -" in output  # configured nowhere: left alone
    assert digest(disk) == before  # the image under the overlay was never written
    seen = in_guest(
        overlay,
        tmp_path / "check",
        f"cat {LINK_FILE.format(name='ens192')}",
        "ls -p /etc/systemd/network",
    )
    assert f"MACAddress={MAC}" in seen and "Name=ens192" in seen
    assert "/100644/0/0/10-migrator-ens192.link/" in seen and "/100644/0/0/10-migrator-ens224.link/" in seen
    assert "10-migrator-ens256.link" not in seen
    assert not (tmp_path / "view").exists()  # the export is gone with its mountpoint


@needs_host_pinning
def test_without_systemd_a_udev_rule_is_appended(tmp_path: Path) -> None:
    tree = debian_like_tree(tmp_path / "tree", systemd=False)
    rules = tree / "etc/udev/rules.d"
    rules.mkdir(parents=True)
    (rules / "70-migrator-net.rules").write_text("# kept\n")
    disk = make_disk(tmp_path / "disk.raw", tree)
    overlay = overlay_of(disk)
    root = rootfs.cheap_root((GuestDisk(disk),))
    assert root is not None
    output, _ = hostpin.pin_from_host([(MAC, "ens192")], overlay, root, tmp_path / "v", io.StringIO(), [])
    assert "udev-rule" in output
    seen = in_guest(overlay, tmp_path / "check", f"cat {UDEV_FILE}")
    assert "# kept" in seen and f'ATTR{{address}}=="{MAC}"' in seen and 'NAME="ens192"' in seen


@needs_host_pinning
def test_a_dirty_journal_or_a_linked_configuration_is_left_to_the_appliance(tmp_path: Path) -> None:
    dirty = make_disk(tmp_path / "dirty.raw", debian_like_tree(tmp_path / "t1"))
    subprocess.run(["debugfs", "-w", "-R", "feature needs_recovery", f"{dirty}?offset={PARTITION_START}"], check=True)
    linked_tree = debian_like_tree(tmp_path / "t2")
    (linked_tree / "etc/network/interfaces").unlink()
    (linked_tree / "etc/network/interfaces").symlink_to("/etc/network/interfaces.vmware")
    linked = make_disk(tmp_path / "linked.raw", linked_tree)
    linked_dir_tree = debian_like_tree(tmp_path / "t3")
    (linked_dir_tree / "etc/vmware-netplan").mkdir()
    (linked_dir_tree / "etc/vmware-netplan/01-ens192.yaml").write_text("network: {ethernets: {ens192: {}}}\n")
    (linked_dir_tree / "etc/netplan").symlink_to("vmware-netplan")
    linked_dir = make_disk(tmp_path / "linked-dir.raw", linked_dir_tree)
    cases = (
        (dirty, "journal needs recovery"),
        (linked, "not a regular file"),
        (linked_dir, "/etc/netplan is a symbolic link"),
    )
    for disk, reason in cases:
        overlay = overlay_of(disk)
        root = rootfs.cheap_root((GuestDisk(disk),))
        assert root is not None
        with pytest.raises(hostpin.HostPinUnavailable, match=reason):
            hostpin.pin_from_host([(MAC, "ens192")], overlay, root, tmp_path / "v", io.StringIO(), [])
        mapped = json.loads(
            subprocess.run(["qemu-img", "map", "--output=json", str(overlay)], capture_output=True).stdout
        )
        assert not [m for m in mapped if m["depth"] == 0 and m["data"]]  # nothing was written into the overlay


@pytest.mark.slow
@needs_host_pinning
def test_the_appliance_pins_what_the_host_cannot(tmp_path: Path) -> None:
    """A root whose journal needs recovery: the host refuses it, guestfish (the kernel replays the journal) pins."""
    tree = debian_like_tree(tmp_path / "tree")
    (tree / "tmp").mkdir()
    (tree / "bin").mkdir()  # the script runs in the guest: busybox's shell and tools (Debian's busybox-static)
    shutil.copy("/bin/busybox", tree / "bin/busybox")
    for applet in ("sh", "grep", "mkdir"):
        (tree / "bin" / applet).symlink_to("busybox")
    disk = make_disk(tmp_path / "dirty.raw", tree)
    subprocess.run(["debugfs", "-w", "-R", "feature needs_recovery", f"{disk}?offset={PARTITION_START}"], check=True)
    request = ConversionRequest(
        name="dirty",
        disks=(GuestDisk(disk),),
        nics=(GuestNic(MAC, "vmxnet3", "ens192"),),
        state_dir=tmp_path / "state",
    )
    overlays = _fresh_overlays(request)
    log_file = tmp_path / "pin.log"
    with log_file.open("w") as log:
        pins, warnings, seconds, overlays = _pin_names(request, overlays, log, lambda *_: None)
    text = log_file.read_text()
    assert "pinning from the host is not possible: the root filesystem's journal needs recovery" in text, text
    assert [(p.mac, p.name, p.method) for p in pins] == [(MAC, "ens192", "systemd-link")], text
    assert warnings == [] and seconds > 0
    assert "Name=ens192" in in_guest(overlays[0], tmp_path / "check", f"cat {LINK_FILE.format(name='ens192')}")
