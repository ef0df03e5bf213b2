"""The tiny real test guest: a Debian kernel with a busybox initramfs, on an MBR/syslinux or GPT/OVMF disk.

build_guest(workdir=None, *, firmware="bios"|"efi", behaviour="wait", marker=...) -> GuestImage
to_vmdk(image, dest_dir, subformat="monolithicSparse") -> [descriptor, *extents]
kernel_and_initrd(workdir=None) -> (vmlinuz, initrd); kernel_cmdline(behaviour, marker) -> str
"""

from testbed.guestimage.build import (
    CRASH_LINE,
    DEFAULT_MARKER,
    END_OF_DEVICES_LINE,
    POWEROFF_LINE,
    SHUTDOWN_LINE,
    GuestImage,
    build_guest,
    guest_cache_dir,
    kernel_and_initrd,
    kernel_cmdline,
)
from testbed.guestimage.packages import GuestImageError
from testbed.guestimage.vmdk import to_vmdk

__all__ = [
    "CRASH_LINE",
    "DEFAULT_MARKER",
    "END_OF_DEVICES_LINE",
    "POWEROFF_LINE",
    "SHUTDOWN_LINE",
    "GuestImage",
    "GuestImageError",
    "build_guest",
    "guest_cache_dir",
    "kernel_and_initrd",
    "kernel_cmdline",
    "to_vmdk",
]
