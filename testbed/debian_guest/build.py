"""Build a VMware-shaped Debian 12 guest from Debian packages, once per machine.

The root tree comes from ``mmdebstrap`` (the host's apt sources), shaped by ``customize.sh``:
initramfs-tools with ``MODULES=list`` holding only VMware's storage drivers (vmw_pvscsi, mptspi,
ahci, plus sd_mod and ext4 for the root file system) and no virtio, open-vm-tools enabled,
``/etc/network/interfaces`` with a static address on ``ens192`` (vSphere's name for a vmxnet3 NIC
in PCI slot 192), and ``migrator-report.service`` printing on ttyS0::

    MIGRATOR-DEBIAN-REPORT
    ROOT <source of /> <its resolved device>
    NIC <name> <mac> <ipv4/len,...|->        (one per interface but lo)
    DRIVERS <loaded module,...>
    OPEN-VM-TOOLS installed|absent
    SYSTEM <systemctl is-system-running>
    MIGRATOR-DEBIAN-READY

One guestfish session then lays out the disk as a VMware installer would: an MBR partition
table, ext4 root with a fixed UUID that ``/etc/fstab`` and GRUB name, GRUB in the MBR. The image
(raw and a monolithicSparse VMDK) is cached under ``cache_dir()/debian-guest/<key>``, the key
hashing the package versions and this package's source.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.paths import cache_dir
from testbed.guestimage.packages import GuestImageError, candidate_version, installed_version

SUITE = "bookworm"
MARKER = "MIGRATOR-DEBIAN-READY"
REPORT_LINE = "MIGRATOR-DEBIAN-REPORT"
NIC_NAME = "ens192"
PCI_SLOT = 192
ADDRESS = "192.0.2.10/24"
MAC = "00:50:56:8a:3c:19"
DISK_SIZE = "2G"
ROOT_UUID = "5f0c6a8e-2b1d-4c3e-9a7f-0d1e2f3a4b5c"
PACKAGES = (
    "linux-image-amd64",
    "grub-pc",
    "initramfs-tools",
    "systemd-sysv",
    "dbus",  # systemd-logind needs it: the ACPI power button powers the guest off
    "udev",
    "ifupdown",
    "iproute2",
    "kmod",
    "mawk",
    "e2fsprogs",
    "mount",
    "open-vm-tools",
)
VMDK_NAME = "guest.vmdk"
RECIPE = 1  # bump when _root_tar() or _disk() build a different image (the .sh files are hashed themselves)
HERE = Path(__file__).parent


@dataclass(frozen=True)
class DebianGuest:
    raw: Path  # the bootable disk, raw
    vmdk: Path  # the same disk as a monolithicSparse VMDK, as a datastore holds it
    marker: str
    nic_name: str
    pci_slot: int
    mac: str
    address: str
    root_uuid: str


def guest_cache_dir() -> Path:
    return cache_dir() / "debian-guest"


def _sources() -> list[str]:
    """The host's configured apt sources (deb822 files and one-line lists), as mmdebstrap mirrors."""
    found = [str(p) for p in sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))]
    found += [str(p) for p in sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists() and any(line.strip().startswith("deb ") for line in legacy.read_text().splitlines()):
        found.append(str(legacy))
    if not found:
        raise GuestImageError("no apt sources configured on this machine (/etc/apt/sources.list*)")
    return found


@functools.cache
def _key() -> str:
    digest = hashlib.sha256()
    for package in PACKAGES:
        digest.update(f"{package}={candidate_version(package)}\n".encode())
    digest.update(f"mmdebstrap={installed_version('mmdebstrap')}\n".encode())
    digest.update(f"{NIC_NAME} {PCI_SLOT} {ADDRESS} {MAC} {DISK_SIZE} {ROOT_UUID}\n".encode())
    digest.update(f"recipe {RECIPE}\n".encode())
    for path in sorted(HERE.glob("*.sh")):  # the guest's shape and its report
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _run(cmd: list[str], what: str, *, input_text: str | None = None, env: dict[str, str] | None = None) -> str:
    try:
        done = subprocess.run(cmd, input=input_text, capture_output=True, text=True, env=env)
    except FileNotFoundError:
        raise GuestImageError(f"{cmd[0]} not found: install the project's Debian packages (`make deps`)") from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise GuestImageError(f"{what} failed: {lines[-1] if lines else f'exit status {done.returncode}'}")
    return done.stdout


def libguestfs_env() -> dict[str, str]:
    """libguestfs runs its appliance directly; under TCG where KVM does not boot guests (MIGRATOR_ACCEL)."""
    env = {**os.environ, "LIBGUESTFS_BACKEND": "direct"}
    if os.environ.get("MIGRATOR_ACCEL", "tcg") != "kvm":
        env["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg"
    return env


def _root_tar(work: Path) -> Path:
    tarball = work / "root.tar"
    hook = f'sh {HERE / "customize.sh"} "$1" {NIC_NAME} {ADDRESS} {HERE / "report.sh"}'
    _run(
        [
            "mmdebstrap",
            "--mode=root",
            "--variant=apt",
            "--include=" + ",".join(PACKAGES),
            "--aptopt=APT::Install-Recommends false",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "--dpkgopt=path-exclude=/lib/firmware/*",
            f"--customize-hook={hook}",
            "--quiet",
            SUITE,
            str(tarball),
            *_sources(),
        ],
        "mmdebstrap",
    )
    return tarball


def _disk(tarball: Path, raw: Path) -> None:
    """MBR, one ext4 partition with a fixed UUID, the tree, fstab by UUID, GRUB in the MBR.

    GRUB is installed on the disk that holds /boot/grub as the appliance's kernel names it: libguestfs
    calls the disk /dev/sda, but the kernel may list the appliance's own disk first."""
    script = f"""
sparse {raw} {DISK_SIZE}
run
part-init /dev/sda mbr
part-add /dev/sda p 2048 -1
part-set-bootable /dev/sda 1 true
mkfs ext4 /dev/sda1
set-uuid /dev/sda1 {ROOT_UUID}
mount /dev/sda1 /
tar-in {tarball} / xattrs:true acls:true
write /etc/fstab "UUID={ROOT_UUID} / ext4 errors=remount-ro 0 1\\n"
sh "grub-install --target=i386-pc $(grub-probe --target=disk /boot/grub)"
command "update-grub"
umount-all
"""
    _run(["guestfish", "--no-progress-bars"], "guestfish (disk layout, GRUB)", input_text=script, env=libguestfs_env())


def build_debian_guest() -> DebianGuest:
    """The cached VMware-shaped Debian guest (raw + VMDK), building it when missing (minutes)."""
    build = guest_cache_dir() / _key()
    # the VMDK's embedded descriptor names its own file: it is made, cached and copied as guest.vmdk
    raw, vmdk = build / "debian12.raw", build / VMDK_NAME
    if not (raw.exists() and vmdk.exists()):
        with _locked(guest_cache_dir()):
            if not (raw.exists() and vmdk.exists()):
                build.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory(dir=guest_cache_dir(), prefix="build-") as tmp:
                    work = Path(tmp)
                    partial = work / "disk.raw"
                    _disk(_root_tar(work), partial)
                    partial_vmdk = work / VMDK_NAME
                    _run(
                        ["qemu-img", "convert", "-q", "-f", "raw", "-O", "vmdk", "-o", "subformat=monolithicSparse"]
                        + ["-o", "adapter_type=lsilogic", str(partial), str(partial_vmdk)],
                        "qemu-img convert (VMDK)",
                    )
                    shutil.move(str(partial_vmdk), vmdk)
                    shutil.move(str(partial), raw)
    return DebianGuest(raw, vmdk, MARKER, NIC_NAME, PCI_SLOT, MAC, ADDRESS, ROOT_UUID)


def write_vmx(guest: DebianGuest, directory: Path, name: str = "debian12-vmware", *, copy_disk: bool = True) -> Path:
    """A standalone VM directory as ESXi keeps it: ``guest.vmx`` beside its VMDK (pvscsi, vmxnet3 in slot 192)."""
    directory.mkdir(parents=True, exist_ok=True)
    disk = directory / VMDK_NAME
    if copy_disk:
        subprocess.run(["cp", "--sparse=always", "--reflink=auto", str(guest.vmdk), str(disk)], check=True)
    entries = {
        ".encoding": "UTF-8",
        "config.version": "8",
        "virtualHW.version": "19",
        "displayName": name,
        "guestOS": "debian12-64",
        "memSize": "1024",
        "numvcpus": "1",
        "firmware": "bios",
        "uuid.bios": "56 4d " + " ".join(f"{b:02x}" for b in uuid.uuid5(uuid.NAMESPACE_DNS, name).bytes[2:]),
        "scsi0.present": "TRUE",
        "scsi0.virtualDev": "pvscsi",
        "scsi0.pciSlotNumber": "160",
        "scsi0:0.present": "TRUE",
        "scsi0:0.fileName": disk.name,
        "scsi0:0.deviceType": "scsi-hardDisk",
        "ethernet0.present": "TRUE",
        "ethernet0.virtualDev": "vmxnet3",
        "ethernet0.networkName": "VM Network",
        "ethernet0.addressType": "static",
        "ethernet0.address": guest.mac,
        "ethernet0.pciSlotNumber": str(guest.pci_slot),
        "tools.syncTime": "FALSE",
    }
    vmx = directory / "guest.vmx"
    vmx.write_text("".join(f'{key} = "{value}"\n' for key, value in entries.items()))
    return vmx
