"""Boot the test guest with a bare `qemu-system-x86_64` (no libvirt) and watch its serial console.

The reference the tests, the accelerator probe and the boot benchmark's peer use: one q35
machine, the disk on virtio-blk, one virtio-net NIC with a fixed MAC, serial on stdio, a
pvpanic device whose panic makes QEMU exit with a failure, and a monitor socket for the
ACPI power button.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

from testbed.guestimage.build import GuestImage
from testbed.guestimage.packages import GuestImageError

QEMU = "qemu-system-x86_64"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
DEFAULT_MAC = "52:54:00:12:34:56"


def qemu_command(
    image: GuestImage,
    *,
    accel: str = "tcg",
    memory_mib: int = 256,
    mac: str = DEFAULT_MAC,
    monitor: Path | None = None,
    efi_vars: Path | None = None,
    extra_args: list[str] | None = None,
) -> list[str]:
    """The bare QEMU command line booting `image` with its console on stdout."""
    cmd = [
        QEMU,
        "-machine",
        "q35",
        "-accel",
        accel,
        "-m",
        str(memory_mib),
        "-nographic",
        "-serial",
        "stdio",
        "-monitor",
        f"unix:{monitor},server=on,wait=off" if monitor else "none",
        "-drive",
        f"file={image.raw},if=none,id=disk0,format=raw",
        "-device",
        "virtio-blk-pci,drive=disk0,bootindex=1",
        "-netdev",
        "user,id=n0",
        "-device",
        f"virtio-net-pci,netdev=n0,mac={mac}",
        "-device",
        "pvpanic",
        "-action",
        "panic=exit-failure",
    ]
    if image.firmware == "efi":
        if efi_vars is None:
            raise GuestImageError("an EFI guest needs a writable copy of the OVMF variables (efi_vars)")
        cmd += [
            "-drive",
            f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
            "-drive",
            f"if=pflash,format=raw,unit=1,file={efi_vars}",
        ]
    return cmd + list(extra_args or [])


class BareGuest:
    """A running bare QEMU guest; use as a context manager (the process is killed on exit)."""

    def __init__(
        self,
        image: GuestImage,
        *,
        accel: str = "tcg",
        mac: str = DEFAULT_MAC,
        memory_mib: int = 256,
        extra_args: list[str] | None = None,
    ) -> None:
        if shutil.which(QEMU) is None:
            raise GuestImageError(f"{QEMU} not found: install qemu-system-x86 (`make deps`)")
        self._tmp = tempfile.TemporaryDirectory(prefix="bare-guest-")
        self.monitor = Path(self._tmp.name) / "monitor.sock"
        efi_vars = None
        if image.firmware == "efi":
            efi_vars = Path(self._tmp.name) / "OVMF_VARS.fd"
            shutil.copyfile(OVMF_VARS, efi_vars)
        self.command = qemu_command(
            image,
            accel=accel,
            mac=mac,
            memory_mib=memory_mib,
            monitor=self.monitor,
            efi_vars=efi_vars,
            extra_args=extra_args,
        )
        self.started = time.monotonic()
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._proc = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for raw in self._proc.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n").replace("\r", "")
            with self._cond:
                self._lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def lines(self) -> list[str]:
        with self._cond:
            return list(self._lines)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float, *, exact: bool = True) -> float | None:
        """Seconds since start when a console line equal to (or containing) `text` appeared; None on timeout/exit."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self._lines[seen:]:
                    if line == text if exact else text in line:
                        return time.monotonic() - self.started
                seen = len(self._lines)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self._proc.poll() is not None and not self._reader.is_alive()):
                    return None
                self._cond.wait(min(remaining, 0.2))

    def powerdown(self) -> None:
        """Press the ACPI power button (what `virsh shutdown` does)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.monitor))
            sock.sendall(b"system_powerdown\n")
            time.sleep(0.2)

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._proc.wait()

    def __enter__(self) -> BareGuest:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()
        self._reader.join(timeout=5)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._tmp.cleanup()
