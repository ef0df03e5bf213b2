"""Guest conversion: the copied OS made to run on KubeVirt's hardware (virtio), with virt-v2v.

convert_guest(ConversionRequest(name, disks=(GuestDisk(path, format, source_bus),), nics=(GuestNic(mac, ...),),
              root="first", virtio_win=None, accelerator="kvm"|"tcg", state_dir=DIR), on_event) -> Inspection
Works on the TARGET images only, crash-safely (qcow2 overlays committed once virt-v2v succeeded);
raises GuestConversionError with virt-v2v's own reason. ``netnames.vmware_interface_name(slot)``
gives a NIC's VMware name (ens192). ``domain.domain_xml`` is the -i libvirtxml input.
"""

from converters.guest.convert import (
    PHASE_OBSERVERS,
    GuestConversionError,
    GuestEvent,
    convert_guest,
    forget,
    log_path,
    recorded,
    state_path,
)
from converters.guest.model import ConversionRequest, GuestDisk, GuestNic, Inspection, NicPin
from converters.guest.netnames import vmware_interface_name

__all__ = [
    "PHASE_OBSERVERS",
    "ConversionRequest",
    "GuestConversionError",
    "GuestDisk",
    "GuestEvent",
    "GuestNic",
    "Inspection",
    "NicPin",
    "convert_guest",
    "forget",
    "log_path",
    "recorded",
    "state_path",
    "vmware_interface_name",
]
