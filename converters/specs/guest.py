"""Does the guest carry virtio drivers? Decides disk bus and NIC model.

Linux has had virtio drivers in the mainline kernel since 2.6.25, so every VMware Linux
guest id of a distribution released after 2008 is virtio-ready. Windows, the BSDs, Solaris
and old Linux guests need drivers installed first (or a conversion, e.g. virt-v2v): they
get the bus closest to their source hardware instead.
"""

from __future__ import annotations

import re

from migrator.inventory.model import VM

# VMware guest ids (vim.vm.GuestOsDescriptor.GuestOsIdentifier) of Linux releases with a kernel ≥ 2.6.25.
_READY = re.compile(
    r"^("
    r"rhel([6-9]|1\d)|centos([6-9]|1\d)?|oracleLinux([6-9]|1\d)?|rockylinux|almalinux|"
    r"ubuntu|debian([6-9]|1\d)|sles(11|12|15|16)|opensuse|fedora|"
    r"other(26x|3x|4x|5x|6x)Linux|amazonlinux|asianux([4-9])|coreos|photon|vmwarePhoton|"
    r"miraclelinux|pardus|turbolinux|mandriva|genericLinux|crxPod|crxSys"
    r")",
    re.IGNORECASE,
)
# Extra-config keys a conversion tool (ours or virt-v2v) leaves when it installed virtio drivers.
CONVERTED_KEYS = ("migrator.converted", "migrator.virtioReady")


def guest_virtio_ready(vm: VM) -> bool:
    for key in CONVERTED_KEYS:
        if str(vm.extra_config.get(key, "")).lower() in ("true", "1", "yes"):
            return True
    guest_id = vm.guest_id or ""
    if _READY.match(guest_id):
        return True
    # OVF/VMX sources sometimes only name the OS: "Ubuntu Linux (64-bit)", "CentOS 7 (64-bit)".
    name = (vm.guest_name or "").lower()
    return any(word in name for word in ("ubuntu", "centos", "debian", "fedora", "rhel", "red hat enterprise linux 7"))
