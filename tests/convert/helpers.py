"""Real disks and VMX files for the convert tests, and the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from core.plan import Plan

PROJECT = Path(__file__).resolve().parents[2]
MIGRATOR = PROJECT / ".venv" / "bin" / "migrator"
MIB = 1024 * 1024


def make_vmdk(path: Path, size: str = "8M", pattern: int = 0x5A, subformat: str = "monolithicSparse") -> Path:
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "vmdk", "-o", f"subformat={subformat}", str(path), size], check=True
    )
    subprocess.run(
        ["qemu-io", "-f", "vmdk", "-c", f"write -P {pattern:#x} 0 1M", str(path)], check=True, capture_output=True
    )
    return path


def write_vmx(
    path: Path,
    name: str,
    disks: list[str],
    *,
    guest: str = "debian10-64",
    mac: str = "00:50:56:01:02:03",
    bios_uuid: str = "42 31 a8 c1 2b 3c 4d 5e-8f 90 a1 b2 c3 d4 e5 f6",
) -> Path:
    lines = [
        '.encoding = "UTF-8"',
        'config.version = "8"',
        'virtualHW.version = "14"',
        f'displayName = "{name}"',
        f'guestOS = "{guest}"',
        'memSize = "256"',
        'numvcpus = "2"',
        'cpuid.coresPerSocket = "2"',
        f'uuid.bios = "{bios_uuid}"',
        'scsi0.present = "TRUE"',
        'scsi0.virtualDev = "pvscsi"',
        'ethernet0.present = "TRUE"',
        'ethernet0.virtualDev = "vmxnet3"',
        'ethernet0.networkName = "VM Network"',
        'ethernet0.addressType = "static"',
        f'ethernet0.address = "{mac}"',
    ]
    for unit, disk in enumerate(disks):
        lines += [
            f'scsi0:{unit}.present = "TRUE"',
            f'scsi0:{unit}.deviceType = "scsi-hardDisk"',
            f'scsi0:{unit}.fileName = "{disk}"',
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_plan(path: Path, plan: Plan) -> Path:
    path.write_text(yaml.safe_dump(plan.to_dict(), sort_keys=True))
    return path


def migrator(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MIGRATOR), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=PROJECT,
    )


def images_equal(a: Path, b: Path) -> bool:
    result = subprocess.run(["qemu-img", "compare", "-q", str(a), str(b)], capture_output=True, text=True)
    if result.returncode not in (0, 1):
        print(result.stderr, file=sys.stderr)
    return result.returncode == 0


def load_yaml(path: Path) -> dict:
    data: dict = yaml.safe_load(path.read_text())
    return data
