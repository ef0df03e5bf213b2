"""A VMware-shaped Debian 12 guest (pvscsi, vmxnet3 in PCI slot 192, no virtio in its initramfs).

build_debian_guest() -> DebianGuest(raw, vmdk, marker, nic_name, pci_slot, mac, address, root_uuid)
write_vmx(guest, directory, name) -> DIR/guest.vmx beside DIR/guest.vmdk
"""

from testbed.debian_guest.build import (
    MARKER,
    REPORT_LINE,
    DebianGuest,
    build_debian_guest,
    guest_cache_dir,
    libguestfs_env,
    write_vmx,
)

__all__ = [
    "MARKER",
    "REPORT_LINE",
    "DebianGuest",
    "build_debian_guest",
    "guest_cache_dir",
    "libguestfs_env",
    "write_vmx",
]
