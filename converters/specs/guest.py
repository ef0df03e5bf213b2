"""Does the guest carry virtio drivers? Decides disk bus and NIC model.

Linux has had virtio drivers in the mainline kernel since 2.6.25, so every VMware Linux
guest id of a distribution released after 2008 is virtio-ready. Windows, the BSDs, Solaris
and old Linux guests need drivers installed first (or a conversion, e.g. virt-v2v): they
get the bus closest to their source hardware instead.
"""

from __future__ import annotations

import re

from core.inventory import VM

# VMware guest ids (vim.vm.GuestOsDescriptor.GuestOsIdentifier) of Linux releases with a kernel ≥ 2.6.25.
_READY = re.compile(
    r"^("
    r"(rhel|centos|oracleLinux|debian)([6-9]|1\d)(?!\d)|rockylinux|almalinux|"
    r"ubuntu|sles(11|12|15|16)|opensuse|fedora|"
    r"other(26x|3x|4x|5x|6x)Linux|amazonlinux|asianux[4-9](?!\d)|coreos|photon|vmwarePhoton|"
    r"miraclelinux|pardus|turbolinux|mandriva|genericLinux|crxPod|crxSys"
    r")",
    re.IGNORECASE,
)
_READY_NAME = re.compile(
    r"\b(ubuntu|debian|fedora|centos|rocky|alma|red hat enterprise linux ([6-9]|1\d))\b", re.IGNORECASE
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
    # OVF sources sometimes only name the OS: "Ubuntu Linux (64-bit)", "CentOS 7 (64-bit)".
    return bool(_READY_NAME.search(vm.guest_name or ""))
