"""A Windows guest boots on KubeVirt's virtio disks and NICs only once virtio-win drivers are installed.

virt-v2v installs them during conversion from ``VIRTIO_WIN`` (the virtio-win ISO or an unpacked
directory); Debian does not ship them. Without it the conversion cannot make the guest bootable,
so the plan says what to provide. ``--skip-conversion`` (sata disks, e1000e NICs) stays the user's
explicit choice for a guest that already has the drivers.
"""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def is_windows(vm: VM) -> bool:
    guest_id = (vm.guest_id or "").lower()
    return guest_id.startswith("win") or "windows" in guest_id or "windows" in (vm.guest_name or "").lower()


def check(vm: VM, context: RuleContext) -> list[Concern]:
    if not is_windows(vm) or context.virtio_win:
        return []
    return [
        RULE.concern(
            "Windows needs virtio drivers to boot on KubeVirt and Debian ships none: set VIRTIO_WIN to the "
            "virtio-win ISO or an unpacked virtio-win directory before plan and convert, or convert with "
            "--skip-conversion if the guest already has virtio drivers."
        )
    ]


RULE = Rule(
    "windows-virtio-drivers",
    Severity.CRITICAL,
    check,
    "a Windows guest without virtio-win drivers",
    remedy=(
        "Set VIRTIO_WIN to the virtio-win ISO (or an unpacked directory) and plan again, or use --skip-conversion "
        "if the guest already has virtio drivers."
    ),
)
