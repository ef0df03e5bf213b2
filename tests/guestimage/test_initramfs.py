"""The initramfs: modules in dependency order, and an archive the real cpio tool reads."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

from testbed.guestimage import kernel_and_initrd
from testbed.guestimage.initramfs import load_order

MODULES_DEP = """\
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/misc/pvpanic/pvpanic-pci.ko: kernel/drivers/misc/pvpanic/pvpanic.ko
kernel/drivers/misc/pvpanic/pvpanic.ko:
kernel/drivers/unwanted.ko:
"""


def test_dependencies_load_first_and_unknown_names_are_skipped(tmp_path: Path) -> None:
    dep = tmp_path / "modules.dep"
    dep.write_text(MODULES_DEP)
    order = load_order(dep, ("virtio_blk", "pvpanic-pci", "no_such_module", "virtio"))
    assert order == [
        "kernel/drivers/virtio/virtio_ring.ko",
        "kernel/drivers/virtio/virtio.ko",
        "kernel/drivers/block/virtio_blk.ko",
        "kernel/drivers/misc/pvpanic/pvpanic.ko",
        "kernel/drivers/misc/pvpanic/pvpanic-pci.ko",
    ]


def test_initramfs_is_a_newc_archive_with_init_console_and_drivers(tmp_path: Path) -> None:
    _, initrd = kernel_and_initrd()
    archive = gzip.decompress(initrd.read_bytes())
    listing = subprocess.run(["cpio", "-itv"], input=archive, capture_output=True, check=True).stdout.decode()
    names = {line.split()[-1] for line in listing.splitlines() if line.strip()}
    assert {"init", "bin/busybox", "dev/console"} <= names
    console = next(line for line in listing.splitlines() if line.endswith("dev/console"))
    assert console.startswith("crw")
    order = next(name for name in names if name.endswith("/load-order"))
    subprocess.run(["cpio", "-id", order], input=archive, cwd=tmp_path, capture_output=True, check=True)
    loaded = (tmp_path / order).read_text().split()
    for driver in ("virtio_blk.ko", "virtio_net.ko", "virtio_pci.ko", "evdev.ko", "button.ko", "ahci.ko"):
        assert driver in loaded
    assert loaded.index("virtio.ko") < loaded.index("virtio_blk.ko")
