"""VMware-style VMDK copies of the guest disk, as a vSphere datastore would hold them."""

from __future__ import annotations

import re
from pathlib import Path

from testbed.guestimage.build import GuestImage
from testbed.guestimage.packages import GuestImageError, run

SUBFORMATS = ("monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat", "streamOptimized")
_EXTENT = re.compile(r'^(?:RW|RDONLY|NOACCESS)\s+\d+\s+\w+\s+"([^"]+)"', re.MULTILINE)


def to_vmdk(
    image: GuestImage,
    dest_dir: Path,
    subformat: str = "monolithicSparse",
    *,
    adapter_type: str = "lsilogic",
    name: str | None = None,
) -> list[Path]:
    """Convert the raw guest disk to a VMDK with qemu-img; returns the descriptor (or single file) then its extents."""
    if subformat not in SUBFORMATS:
        raise GuestImageError(f"unknown VMDK subformat {subformat!r}: expected one of {', '.join(SUBFORMATS)}")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / f"{name or image.raw.stem}.vmdk"
    options = f"subformat={subformat},adapter_type={adapter_type}"
    run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "vmdk", "-o", options, str(image.raw), str(target)])
    if subformat in ("monolithicSparse", "streamOptimized"):
        return [target]  # the descriptor is embedded in the sparse extent
    extents = _EXTENT.findall(target.read_text(errors="replace"))
    return [target, *(dest_dir / extent for extent in extents)]
