"""Sources: where VMs come from. One adapter per kind, chosen by the source string's scheme.

- ``vsphere://user@host[:port][/datacenter]``: a vCenter or ESXi host, through pyvmomi.
- ``vmx:PATH``: a VMware .vmx file (standalone ESXi, Workstation).
- ``ovf:PATH`` / ``ova:PATH``: an OVF descriptor, or an OVA tar holding one.
- ``rvtools:PATH.xlsx``: an RVTools export (inventory only: plan and report, not convert).

Every adapter returns the same inventory model (core.inventory).
"""

from __future__ import annotations

import importlib
import ssl
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

from core.errors import InputError
from core.inventory import Inventory

# scheme -> "module:factory"; the factory takes (location, SourceOptions) and returns a Source.
ADAPTERS: dict[str, str] = {
    "vsphere": "migrator.sources.vsphere:open_vsphere",
    "vmx": "migrator.sources.vmx:open_vmx",
    "ovf": "migrator.sources.ovf:open_ovf",
    "ova": "migrator.sources.ovf:open_ova",
    "rvtools": "migrator.sources.rvtools:open_rvtools",
}
# Sources that describe VMs but hold no disks: good for planning and reports, not for convert or cutover.
INVENTORY_ONLY: frozenset[str] = frozenset({"rvtools"})


@dataclass(frozen=True)
class SourceOptions:
    """How to reach a source. The password itself is never stored here, only where to find it."""

    insecure: bool = False  # skip TLS verification: an explicit choice, never the default, never stored
    thumbprint: str | None = None  # accept exactly this SHA-1/SHA-256 certificate thumbprint
    password_env: str = "MIGRATOR_VSPHERE_PASSWORD"
    password_file: str | None = None
    prompt: bool = True  # ask on the terminal when neither env nor file gives a password
    ca_file: str | None = None  # trust the CAs of this PEM bundle (instead of the system's)
    thumbprint_from_plan: bool = False  # ``thumbprint`` is the one the plan recorded (trust on first use)
    # ESXi datastore name → the local folder holding its copy (for VMX paths /vmfs/volumes/NAME/...)
    datastore_dirs: tuple[tuple[str, str], ...] = ()

    @property
    def explicit_trust(self) -> bool:
        """The user said how to trust the server on this command line (or its environment)."""
        return (
            self.insecure or self.ca_file is not None or (self.thumbprint is not None and not self.thumbprint_from_plan)
        )

    def pinned_to(self, recorded: str | None) -> SourceOptions:
        """These options, trusting the certificate a plan recorded unless the user said otherwise."""
        if recorded is None or self.explicit_trust:
            return self
        return replace(self, thumbprint=recorded, thumbprint_from_plan=True)

    def datastores(self) -> dict[str, Path]:
        return {name: Path(folder) for name, folder in self.datastore_dirs}


class Source(Protocol):
    url: str  # the display URL: never carries a password
    # SHA-256 of the TLS certificate accepted for this session (None for file sources): a plan records it
    certificate_thumbprint: str | None

    def inventory(self) -> Inventory: ...

    def close(self) -> None: ...


# Capabilities beyond ``Source``, offered by the adapters that can (Forklift's per-provider adapters
# offer a client, a builder, a validator the same way): callers check for one with isinstance.


@runtime_checkable
class SingleVMReader(Protocol):
    """A source that reads one VM's inventory without reading the whole estate (a vCenter holds thousands)."""

    def inventory_of(self, vm_name: str) -> Inventory: ...


@runtime_checkable
class DatastoreReader(Protocol):
    """A source whose disks are read over HTTP(S) from its datastores, by the disk engine."""

    def datastore_file_url(self, backing_file: str) -> str:
        """``"[datastore] path.vmdk"`` → the datastore's ``/folder/...`` URL of that file."""

    def http_headers(self) -> dict[str, str]:
        """Headers that authenticate a datastore request (the session cookie); never logged."""

    def ssl_context(self) -> ssl.SSLContext | None: ...


def inventory_of_vm(source: Source, vm_name: str) -> Inventory:
    """One VM's inventory: re-read alone when the source can, else the source's whole (small) inventory."""
    if isinstance(source, SingleVMReader):
        return source.inventory_of(vm_name)
    return source.inventory()


def split_source(spec: str) -> tuple[str, str]:
    """Split a source string into (scheme, location); raise InputError on an unknown scheme."""
    if spec.startswith("vsphere://"):
        return "vsphere", spec[len("vsphere://") :]
    scheme, sep, location = spec.partition(":")
    if not sep or scheme not in ADAPTERS or not location:
        known = ", ".join(["vsphere://USER@HOST[/DC]", "vmx:PATH", "ovf:PATH", "ova:PATH", "rvtools:PATH.xlsx"])
        raise InputError(f"unknown source {spec!r}: expected one of {known}")
    return scheme, location


def open_source(spec: str, options: SourceOptions | None = None) -> Source:
    scheme, location = split_source(spec)
    module_name, factory = ADAPTERS[scheme].split(":")
    module = importlib.import_module(module_name)
    source: Source = getattr(module, factory)(location, options or SourceOptions())
    return source


def require_disks(spec: str, command: str) -> None:
    """Refuse, in one line, a source that cannot give the disks `command` must copy."""
    if split_source(spec)[0] in INVENTORY_ONLY:
        raise InputError(
            f"{spec} is an inventory export with no disks to read: {command} needs a live source "
            "(vsphere://USER@HOST, vmx:PATH, ovf:PATH or ova:PATH); use it for plan and report only"
        )
