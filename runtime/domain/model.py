"""Inputs of the VM instance → libvirt domain translation (typed, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from core.errors import InputError

OVMF_DIR = Path("/usr/share/OVMF")
# Debian's ovmf: 4 MiB builds; ".secboot" requires SMM, ".ms" VARS has Microsoft's keys enrolled.
OVMF_CODE = OVMF_DIR / "OVMF_CODE_4M.fd"
OVMF_VARS = OVMF_DIR / "OVMF_VARS_4M.fd"
OVMF_CODE_SECBOOT = OVMF_DIR / "OVMF_CODE_4M.secboot.fd"
OVMF_VARS_SECBOOT = OVMF_DIR / "OVMF_VARS_4M.ms.fd"


class UnsupportedSpecError(InputError):
    """The VM instance asks for something this runtime cannot honour; ``field`` is its path."""

    def __init__(self, field_path: str, why: str) -> None:
        super().__init__(f"{field_path}: {why}")
        self.field = field_path


@dataclass(frozen=True)
class ResolvedVolume:
    """Where a spec volume's data really is on this host."""

    path: Path
    format: Literal["raw", "qcow2"] = "raw"
    block: bool = False


@dataclass(frozen=True)
class PortForward:
    """Host port → guest port on a user-mode (pod network) interface."""

    host_port: int
    guest_port: int
    protocol: Literal["tcp", "udp"] = "tcp"


@dataclass(frozen=True)
class DomainOptions:
    name: str
    accelerator: Literal["kvm", "tcg"] = "tcg"
    # per-VM UEFI variable store (EFI only); libvirt copies the template there when missing
    nvram_path: Path | None = None
    # serial console log (written by virtlogd); None → a plain pty console without a log
    console_log: Path | None = None
    # interface name → forwards; None → each pod-network port the spec lists, host port = guest port
    port_forwards: Mapping[str, list[PortForward]] | None = None
    # multus network name (as in spec.networks[].multus.networkName) → host bridge that exists here
    bridges: Mapping[str, str] = field(default_factory=dict)
    # run QEMU as this uid:gid without relabelling files (the launcher's own user); None → libvirt's default
    run_as: tuple[int, int] | None = None
    emulator: str | None = None
