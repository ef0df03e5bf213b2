"""A converted-VM layout with the real test guest, as `migrator convert --output-dir` writes it.

Used by the launcher and local-mode tests (not a test module itself).
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml

from core.wait import wait_until

VMWARE_MAC = "00:50:56:9a:0b:01"
TIMEOUT = 120.0  # TCG boots on two shared cores


def vm_manifest(name: str, claim: str, *, efi: bool = False, grace: int = 60) -> dict[str, Any]:
    firmware: dict[str, Any] = {"uuid": str(uuid.uuid4()), "serial": f"VMware-42 16 {name}"}
    if efi:
        firmware["bootloader"] = {"efi": {"secureBoot": False}}
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": "default", "labels": {"migrator.io/source-vm": name}},
        "spec": {
            "runStrategy": "Always",
            "template": {
                "metadata": {"labels": {"kubevirt.io/vm": name}},
                "spec": {
                    "terminationGracePeriodSeconds": grace,
                    "domain": {
                        "cpu": {"sockets": 1, "cores": 1, "threads": 1},
                        "memory": {"guest": "256Mi"},
                        "resources": {"requests": {"memory": "256Mi"}},
                        "machine": {"type": "q35"},
                        "firmware": firmware,
                        "features": {"acpi": {}},
                        "devices": {
                            "disks": [{"name": "disk0", "disk": {"bus": "virtio"}, "bootOrder": 1}],
                            "interfaces": [
                                {"name": "default", "masquerade": {}, "model": "virtio", "macAddress": VMWARE_MAC}
                            ],
                        },
                    },
                    "networks": [{"name": "default", "pod": {}}],
                    "volumes": [{"name": "disk0", "persistentVolumeClaim": {"claimName": claim}}],
                },
            },
        },
    }


def write_layout(directory: Path, name: str, image: Path, **manifest: Any) -> Path:
    """DIR/<name>-vm.yaml + DIR/<claim>-pvc.yaml + DIR/<claim>.img (a sparse copy of the guest)."""
    directory.mkdir(parents=True, exist_ok=True)
    claim = f"{name}-disk0"
    (directory / f"{name}-vm.yaml").write_text(yaml.safe_dump(vm_manifest(name, claim, **manifest), sort_keys=False))
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}},
    }
    (directory / f"{claim}-pvc.yaml").write_text(yaml.safe_dump(pvc))
    subprocess.run(["cp", "--sparse=always", str(image), str(directory / f"{claim}.img")], check=True)
    return directory


def wait_for_text(path: Path, text: str, timeout: float = TIMEOUT) -> str:
    content = ""

    def holds_text() -> str | None:
        nonlocal content
        try:
            content = path.read_text(errors="replace")
        except FileNotFoundError:
            content = ""
        return content if text in content else None

    if wait_until(holds_text, timeout=timeout, interval=0.1):
        return content
    raise AssertionError(f"{text!r} not in {path} within {timeout}s; it holds:\n{content[-2000:]}")


def leftovers(name: str) -> list[str]:
    """Domains and QEMU processes of ``name`` still around (should be none)."""
    import libvirt

    found = []
    conn = libvirt.open("qemu:///system")
    try:
        found += [f"domain {d.name()}" for d in conn.listAllDomains() if d.name() == name]
    finally:
        conn.close()
    pgrep = subprocess.run(["pgrep", "-af", f"guest={name},"], capture_output=True, text=True, check=False)
    found += [f"process {line}" for line in pgrep.stdout.splitlines() if "qemu-system" in line]
    return found


def wait_gone(name: str, timeout: float = 15) -> list[str]:
    """Wait for the domain and QEMU of ``name`` to go; what is still left afterwards."""
    wait_until(lambda: not leftovers(name), timeout=timeout, interval=0.2)
    return leftovers(name)


VMX = """\
.encoding = "UTF-8"
config.version = "8"
virtualHW.version = "14"
displayName = "{name}"
guestOS = "other5xlinux-64"
memSize = "256"
numvcpus = "1"
firmware = "bios"
uuid.bios = "42 16 c9 b8 1a 2b 3c 4d-5e 6f 00 11 22 33 44 55"
scsi0.present = "TRUE"
scsi0.virtualDev = "lsilogic"
scsi0:0.present = "TRUE"
scsi0:0.deviceType = "scsi-hardDisk"
scsi0:0.fileName = "{name}.vmdk"
ethernet0.present = "TRUE"
ethernet0.virtualDev = "vmxnet3"
ethernet0.networkName = "VM Network"
ethernet0.addressType = "static"
ethernet0.address = "{mac}"
"""


def converted_from_vmware(tmp_path: Path, name: str, behaviour: str) -> Path:
    """The test guest as a VMware VM (VMX + VMDK), then `migrator convert --output-dir` as a user runs it."""
    from testbed.guestimage import build_guest, to_vmdk

    image = build_guest(tmp_path / "guest", behaviour=behaviour)
    source = tmp_path / "vmware"
    to_vmdk(image, source, name=name)
    (source / f"{name}.vmx").write_text(VMX.format(name=name, mac=VMWARE_MAC))
    out = tmp_path / "out"
    command = [
        str(Path(sys.executable).parent / "migrator"),
        "convert",
        "--vm",
        name,
        "--source",
        f"vmx:{source / f'{name}.vmx'}",
        "--output-dir",
        str(out),
    ]
    converted = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT)
    assert converted.returncode == 0, converted.stderr
    return out
