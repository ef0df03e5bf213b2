"""Pure translation: VirtualMachineInstance spec → libvirt domain XML (no libvirt import)."""

from runtime.domain.elements import parse_quantity
from runtime.domain.model import DomainOptions, PortForward, ResolvedVolume, UnsupportedSpecError
from runtime.domain.translate import domain_element, domain_xml

__all__ = [
    "DomainOptions",
    "PortForward",
    "ResolvedVolume",
    "UnsupportedSpecError",
    "domain_element",
    "domain_xml",
    "parse_quantity",
]
