"""Which accelerator really runs guests here: KVM when a boot loader's code runs under it, else TCG.

`/dev/kvm` existing proves little: some hosts offer a paravirtual KVM that fails real-mode
(BIOS) guests with "KVM internal error". So the probe boots a boot sector built here, in memory
(``boot_sector``: it switches to protected mode as boot loaders do, prints a marker on the serial
port and exits QEMU through the isa-debug-exit port) through SeaBIOS with ``-accel kvm``, and
watches what QEMU prints. It needs nothing but ``qemu-system-x86_64`` and its SeaBIOS (both in the
runtime's image): no network, no guest image. Where KVM works it answers in a fraction of a
second; the paravirtual KVM of these build machines emulates SeaBIOS and fails after ~4 s.

The answer is cached per boot of the machine (keyed by /proc/sys/kernel/random/boot_id and the
QEMU binary) under ``cache_dir()/accel``, or ``$MIGRATOR_ACCEL_CACHE_DIR``: launcher pods point it at the
node's shared hostPath, so one probe serves every pod of a node; ``MIGRATOR_ACCEL=kvm|tcg`` forces it.
``python -m runtime.accel`` prints it.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from core.errors import InputError
from core.paths import cache_dir
from core.wait import wait_until

ENV = "MIGRATOR_ACCEL"
CACHE_ENV = "MIGRATOR_ACCEL_CACHE_DIR"  # where the answer is kept (a launcher pod: the node's shared hostPath)
KINDS = ("kvm", "tcg")
PROBE_MARKER = b"MIGRATOR-KVM-OK"
PROBE_TIMEOUT = 8.0
DEBUG_EXIT_PORT = 0xF4
LOAD_ADDRESS = 0x7C00  # where the BIOS loads a boot sector
KVM_FAILURES = (
    "KVM internal error",
    "failed to initialize kvm",
    "failed to initialize KVM",
    "Could not access KVM kernel module",
    "kvm run failed",
)


@dataclass(frozen=True)
class Accel:
    kind: Literal["kvm", "tcg"]
    reason: str


def boot_sector(marker: bytes = PROBE_MARKER) -> bytes:
    """A boot sector that does what boot loaders do before a kernel runs, in about 130 bytes.

    In real mode: load a flat GDT, set CR0.PE and far-jump to 32-bit code. In protected mode: load the data
    segments, return through ``iretd`` (as syslinux does from its interrupt thunks), print ``marker`` on COM1
    and exit QEMU through the isa-debug-exit port. A KVM that cannot run a boot loader (e.g. a paravirtual KVM
    whose instruction emulator handles IRET only in real mode) stops there with "KVM internal error", as it
    stops the guests' boot loaders.
    """
    code = bytearray()
    fixups: list[tuple[int, str, int]] = []  # (offset, label, width)
    labels: dict[str, int] = {}

    def emit(*parts: int | tuple[str, int]) -> None:
        for part in parts:
            if isinstance(part, tuple):
                fixups.append((len(code), *part))
                code.extend(b"\x00" * part[1])
            else:
                code.append(part)

    # 16-bit real mode
    emit(0xFA, 0xFC)  # cli; cld
    emit(0x31, 0xC0, 0x8E, 0xD8, 0x8E, 0xD0)  # xor ax,ax; mov ds,ax; mov ss,ax
    emit(0xBC, 0x00, 0x7C)  # mov sp,0x7c00
    emit(0x0F, 0x01, 0x16, ("gdtr", 2))  # lgdt [gdtr]
    emit(0x0F, 0x20, 0xC0, 0x0C, 0x01, 0x0F, 0x22, 0xC0)  # mov eax,cr0; or al,1; mov cr0,eax
    emit(0xEA, ("pm32", 2), 0x08, 0x00)  # jmp 0x08:pm32
    # 32-bit protected mode, flat segments
    labels["pm32"] = len(code)
    emit(0x66, 0xB8, 0x10, 0x00, 0x8E, 0xD8, 0x8E, 0xD0, 0x8E, 0xC0)  # mov ax,0x10; mov ds/ss/es,ax
    emit(0xBC, 0x00, 0x7C, 0x00, 0x00)  # mov esp,0x7c00
    emit(0x9C, 0x6A, 0x08, 0x68, ("after_iret", 4), 0xCF)  # pushfd; push 0x08; push after_iret; iretd
    labels["after_iret"] = len(code)
    emit(0xBE, ("message", 4), 0x66, 0xBA, 0xF8, 0x03)  # mov esi,message; mov dx,0x3f8
    emit(0xAC, 0x84, 0xC0, 0x74, 0x03, 0xEE, 0xEB, 0xF8)  # next: lodsb; test al,al; jz done; out dx,al; jmp next
    emit(0xB0, 0x00, 0xE6, DEBUG_EXIT_PORT, 0xF4, 0xEB, 0xFD)  # done: mov al,0; out 0xf4,al; hlt; jmp $-1
    labels["gdt"] = len(code)
    code += struct.pack("<QQQ", 0, 0x00CF9A000000FFFF, 0x00CF92000000FFFF)  # null, flat code32, flat data32
    labels["gdtr"] = len(code)
    emit(23, 0x00, ("gdt", 4))
    labels["message"] = len(code)
    code += marker + b"\r\n\x00"
    for offset, label, width in fixups:
        code[offset : offset + width] = (LOAD_ADDRESS + labels[label]).to_bytes(width, "little")
    if len(code) > 510:
        raise ValueError("the probe's marker does not fit in a boot sector")
    return bytes(code).ljust(510, b"\x00") + b"\x55\xaa"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown-boot"


def _qemu() -> str | None:
    return shutil.which("qemu-system-x86_64")


def _cache_file() -> Path:
    qemu = _qemu()
    stamp = str(int(Path(qemu).stat().st_mtime)) if qemu else "no-qemu"
    root = Path(os.environ[CACHE_ENV]) if os.environ.get(CACHE_ENV) else cache_dir() / "accel"
    return root / f"{_boot_id()}-{stamp}.json"


def probe_kvm(timeout: float = PROBE_TIMEOUT) -> Accel:
    """Boot the probe sector under KVM (SeaBIOS) and say what happened."""
    if not os.path.exists("/dev/kvm"):
        return Accel("tcg", "no /dev/kvm on this host")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return Accel("tcg", "/dev/kvm is not accessible to this user")
    qemu = _qemu()
    if qemu is None:
        return Accel("tcg", "qemu-system-x86_64 is not installed")
    with tempfile.TemporaryDirectory(prefix="migrator-accel-") as tmp:
        disk = Path(tmp) / "probe.img"
        disk.write_bytes(boot_sector())
        output = Path(tmp) / "output"
        command = [
            qemu,
            *("-accel", "kvm", "-machine", "pc", "-m", "16", "-nodefaults", "-display", "none"),
            *("-monitor", "none", "-no-reboot", "-serial", "stdio"),
            *("-device", f"isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=1"),
            *("-drive", f"file={disk},format=raw,if=ide,index=0"),
        ]
        started = time.monotonic()
        with output.open("wb") as sink:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT)

        def settled() -> bool:
            seen = output.read_bytes().decode(errors="replace")
            return PROBE_MARKER.decode() in seen or any(f in seen for f in KVM_FAILURES) or process.poll() is not None

        try:
            wait_until(settled, timeout=timeout, interval=0.02)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
        seconds = time.monotonic() - started
        seen = output.read_bytes().decode(errors="replace")
    if PROBE_MARKER.decode() in seen:
        return Accel("kvm", f"a boot loader's mode switch ran under KVM (probe sector via SeaBIOS, {seconds:.2f} s)")
    for failure in KVM_FAILURES:
        if failure in seen:
            return Accel("tcg", f"KVM is present but fails a boot loader's real-mode code ({failure!r}); using TCG")
    if seconds < timeout:
        last = next((line for line in reversed(seen.splitlines()) if line.strip()), "no output")
        return Accel("tcg", f"QEMU with KVM exited with status {process.returncode} ({last.strip()[:120]}); using TCG")
    return Accel("tcg", f"the probe sector did not run under KVM within {timeout:.0f} s; using TCG")


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
        accel = probe_kvm()
        partial = target.with_suffix(".partial")
        partial.write_text(json.dumps(asdict(accel)))
        partial.replace(target)
        return accel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtime.accel", description="Which accelerator runs guests here.")
    parser.add_argument("--fresh", action="store_true", help="probe again, ignoring this boot's cached answer")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    try:
        accel = probe_kvm() if args.fresh else probe_accelerator()
    except InputError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(accel)) if args.json else f"{accel.kind}: {accel.reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
