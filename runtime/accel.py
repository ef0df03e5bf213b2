"""Which accelerator really runs guests here: KVM when it boots one, else TCG.

`/dev/kvm` existing proves little: some hosts offer a paravirtual KVM that fails real-mode
(BIOS) guests with "KVM internal error". So the probe boots the tiny test guest through
SeaBIOS under `-accel kvm` and waits for its marker. The answer is cached per boot of the
machine (keyed by /proc/sys/kernel/random/boot_id and the QEMU binary), since probing costs
seconds; `MIGRATOR_ACCEL=kvm|tcg` forces it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from core.errors import InputError, MigratorError
from core.paths import cache_dir

ENV = "MIGRATOR_ACCEL"
KINDS = ("kvm", "tcg")
PROBE_MARKER = "MIGRATOR-ACCEL-PROBE"
PROBE_TIMEOUT = 40.0
KVM_FAILURES = (
    "KVM internal error",
    "failed to initialize kvm",
    "Could not access KVM kernel module",
    "kvm run failed",
)


@dataclass(frozen=True)
class Accel:
    kind: Literal["kvm", "tcg"]
    reason: str


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown-boot"


def _cache_file() -> Path:
    qemu = shutil.which("qemu-system-x86_64")
    stamp = str(int(Path(qemu).stat().st_mtime)) if qemu else "no-qemu"
    return cache_dir() / "accel" / f"{_boot_id()}-{stamp}.json"


def _probe_kvm() -> Accel:
    """Boot the test guest under KVM through SeaBIOS (real mode) and watch what happens."""
    if not os.path.exists("/dev/kvm"):
        return Accel("tcg", "no /dev/kvm on this host")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return Accel("tcg", "/dev/kvm is not accessible to this user")
    from testbed.guestimage import build_guest
    from testbed.guestimage.qemu import BareGuest

    try:
        image = build_guest(behaviour="poweroff", marker=PROBE_MARKER)
    except MigratorError as exc:
        return Accel("tcg", f"could not build the probe guest to test KVM ({exc})")
    with BareGuest(image, accel="kvm") as guest:
        deadline = time.monotonic() + PROBE_TIMEOUT
        while time.monotonic() < deadline:
            seconds = guest.wait_for(PROBE_MARKER, 0.5)
            if seconds is not None:
                return Accel("kvm", f"a test guest booted under KVM through BIOS in {seconds:.1f} s")
            output = guest.output
            for failure in KVM_FAILURES:
                if failure in output:
                    return Accel("tcg", f"KVM is present but fails a real-mode guest ({failure!r}); using TCG")
            status = guest.wait_exit(0)
            if status is not None:
                last = next((line for line in reversed(guest.lines) if line.strip()), "no output")
                return Accel("tcg", f"QEMU with KVM exited with status {status} ({last.strip()[:120]}); using TCG")
        return Accel("tcg", f"a test guest did not boot under KVM within {PROBE_TIMEOUT:.0f} s; using TCG")


def probe_accelerator(force: str | None = None) -> Accel:
    """KVM if a guest really boots with it here, else TCG; `force` or MIGRATOR_ACCEL decide without probing."""
    choice = force or os.environ.get(ENV) or None
    if choice is not None:
        if choice not in KINDS:
            raise InputError(f"unknown accelerator {choice!r} (from {'argument' if force else ENV}): use kvm or tcg")
        return Accel(choice, f"forced by {'the caller' if force else ENV + '=' + choice}")  # type: ignore[arg-type]
    target = _cache_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one probe at a time; later callers read its answer
        try:
            cached = json.loads(target.read_text())
            if cached.get("kind") in KINDS:
                return Accel(cached["kind"], f"{cached['reason']} (probed earlier this boot)")
        except (OSError, ValueError):
            pass
        accel = _probe_kvm()
        partial = target.with_suffix(".partial")
        partial.write_text(json.dumps(asdict(accel)))
        partial.replace(target)
        return accel
