"""The libguestfs/virt-v2v adapter: command lines, environment, and reading what the tools print.

``virt-v2v-in-place -v`` prints its phases (``[  12.3] Inspecting the source``), the inspection
(``i_type = linux``, ``i_distro = debian``, ...), the guest's new capabilities
(``gcaps_block_bus = virtio-blk``, ...), warnings and errors (``virt-v2v-in-place: error: ...``),
interleaved with libguestfs's debugging. Parsing is pure (``V2vOutput.feed``); running is here too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from converters.guest.model import Accelerator, ConversionRequest, Inspection
from converters.guest.netnames import PIN_LINE

IN_PLACE = "virt-v2v-in-place"
GUESTFISH = "guestfish"
_PHASE = re.compile(r"^\[\s*(\d+\.\d)\]\s+(\S.*)$")  # virt-v2v: one decimal; the kernel: six
_FIELD = re.compile(r"^(i_[a-z_]+|gcaps_[a-z_]+)\s*=\s*(.*)$")
# anywhere in a line: the appliance's output is not line-buffered, so messages get spliced into its lines
_PROG = re.compile(r"(virt-v2v(?:-in-place)?|guestfish|libguestfs):\s+(error|warning):\s*(.*)$")
_REMOVED = re.compile(r"\b(?:dpkg --purge|rpm -e|zypper -n rm|yum -y remove)\s+([^\n]+)$")
_DEBUG_PREFIXES = ("libguestfs:", "guestfsd:", "commandrvf:")
# virt-v2v's phases that time the parts of a conversion the benchmark reports
PHASE_KEYS = {
    "Opening the source": "appliance_start",
    "Inspecting the source": "inspection",
    "Converting": "conversion",
    "Mapping filesystem data": "trim",
    "Closing the overlay": "close",
    "Finishing off": "finish",
}


def libguestfs_env(accelerator: Accelerator, virtio_win: str | None = None) -> dict[str, str]:
    """The environment libguestfs and virt-v2v run in: the direct backend; TCG when KVM does not boot guests."""
    env = {k: v for k, v in os.environ.items() if k not in ("LIBGUESTFS_BACKEND_SETTINGS", "VIRTIO_WIN")}
    env["LIBGUESTFS_BACKEND"] = "direct"
    if accelerator == "tcg":
        env["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg"
    if virtio_win:
        env["VIRTIO_WIN"] = virtio_win
    env.setdefault("LANG", "C.UTF-8")
    env.pop("MIGRATOR_VSPHERE_PASSWORD", None)  # the tools never see the source's credentials
    return env


def in_place_command(request: ConversionRequest, domain_xml: Path) -> list[str]:
    return [IN_PLACE, "-v", "-i", "libvirtxml", "--root", request.root, "--keys-from-stdin", str(domain_xml)]


@dataclass
class Phase:
    elapsed: float
    text: str


@dataclass
class V2vOutput:
    """What virt-v2v printed, read line by line."""

    fields: dict[str, str] = field(default_factory=dict)
    phases: list[Phase] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # virt-v2v's (or guestfish's) own
    tool_errors: list[str] = field(default_factory=list)  # libguestfs's, often recovered from
    removed: list[str] = field(default_factory=list)
    marked: list[str] = field(default_factory=list)  # lines our own guest scripts print (netnames.PIN_LINE)
    initramfs: list[float] = field(default_factory=list)  # when the initramfs rebuild started, and ended
    _error_open: bool = False

    def feed(self, line: str, now: float | None = None) -> Phase | None:
        """Take one line (read at ``now``, monotonic seconds); returns the phase it announces, if any."""
        text = line.rstrip("\n")
        if now is not None and text.startswith("commandrvf:"):
            if "update-initramfs" in text or "dracut" in text or "mkinitrd" in text:
                self.initramfs[:] = [now]
            elif len(self.initramfs) == 1 and not text.startswith("commandrvf: stdout="):
                self.initramfs.append(now)  # the next command: the rebuild is over
        if text.startswith(PIN_LINE):
            self.marked.append(text)
            return None
        if self._error_open:
            if text.strip() and not _PHASE.match(text) and not text.startswith(_DEBUG_PREFIXES):
                self.errors[-1] = f"{self.errors[-1]} {text.strip()}"
                return None
            self._error_open = False
        match = _PHASE.match(text)
        if match:
            if now is not None and len(self.initramfs) == 1:
                self.initramfs.append(now)
            phase = Phase(float(match.group(1)), match.group(2).strip())
            self.phases.append(phase)
            return phase
        match = _FIELD.match(text.strip())
        if match:
            self.fields.setdefault(match.group(1), match.group(2).strip())
            return None
        match = _PROG.search(text.strip())
        if match:
            if match.group(2) == "error":
                # virt-v2v's verdict; libguestfs also reports errors it recovers from while probing
                own = match.group(1).startswith("virt-v2v") or match.group(1) == "guestfish"
                (self.errors if own else self.tool_errors).append(match.group(3).strip())
                self._error_open = own
            else:
                self.warnings.append(match.group(3).strip())
            return None
        match = _REMOVED.search(text)
        if match:
            for package in match.group(1).split():
                if re.match(r"^[A-Za-z0-9][A-Za-z0-9+._-]*$", package) and package not in self.removed:
                    self.removed.append(package)
        return None

    def reason(self) -> str | None:
        """virt-v2v's own reason for failing, on one line (its advice to re-run with -v dropped)."""
        if not (self.errors or self.tool_errors):
            return None
        text = (self.errors or self.tool_errors)[0]
        text = re.split(r"\s+If reporting bugs, run virt-v2v", text)[0]
        return re.sub(r"\s+", " ", text).strip()

    def seconds(self) -> dict[str, float]:
        """Seconds per phase (the time to the next phase line)."""
        result: dict[str, float] = {}
        for current, following in zip(self.phases, self.phases[1:], strict=False):
            key = next((v for k, v in PHASE_KEYS.items() if current.text.startswith(k)), None)
            if key:
                result[key] = round(result.get(key, 0.0) + following.elapsed - current.elapsed, 1)
        if len(self.initramfs) == 2:
            result["initramfs_rebuild"] = round(self.initramfs[1] - self.initramfs[0], 1)
        return result

    def inspection(self, vm: str) -> Inspection:
        f = self.fields

        def integer(key: str) -> int | None:
            try:
                return int(f[key])
            except (KeyError, ValueError):
                return None

        firmware = f.get("i_firmware", "")
        drivers = [d for d in (f.get("gcaps_block_bus"), f.get("gcaps_net_bus")) if d and d.startswith("virtio")]
        for key, name in (
            ("gcaps_virtio_rng", "virtio-rng"),
            ("gcaps_virtio_balloon", "virtio-balloon"),
            ("gcaps_isa_pvpanic", "pvpanic"),
            ("gcaps_virtio_socket", "virtio-socket"),
        ):
            if f.get(key) == "true":
                drivers.append(name)
        return Inspection(
            vm=vm,
            os_type=f.get("i_type") or None,
            distro=f.get("i_distro") or None,
            osinfo=f.get("i_osinfo") or None,
            major_version=integer("i_major_version"),
            minor_version=integer("i_minor_version"),
            product_name=f.get("i_product_name") or None,
            arch=f.get("i_arch") or None,
            firmware="uefi" if firmware.startswith("UEFI") else ("bios" if firmware == "BIOS" else None),
            root=f.get("i_root") or None,
            package_format=f.get("i_package_format") or None,
            block_bus=f.get("gcaps_block_bus") or None,
            net_bus=f.get("gcaps_net_bus") or None,
            drivers=drivers,
            removed=list(self.removed),
            warnings=list(self.warnings),
            seconds=self.seconds(),
        )


@dataclass
class Run:
    returncode: int
    output: V2vOutput
    seconds: float


# If we die (kill -9, a crash), the tool is sent SIGTERM: virt-v2v and guestfish then stop their appliance,
# qemu-nbd and nbdkit on their own. Without it the tool ran on, or died of SIGPIPE on its next line of output
# and left its qemu-nbd serving the overlay. util-linux's setpriv sets PR_SET_PDEATHSIG across its exec (it is
# Essential in Debian); the tool is started from the thread that waits for it, so that thread's end is ours.
DIE_WITH_US = ["setpriv", "--pdeathsig", "TERM", "--"] if shutil.which("setpriv") else []


def run_tool(
    argv: list[str],
    env: dict[str, str],
    log: IO[str],
    on_phase: Callable[[Phase], None] = lambda _p: None,
    *,
    stdin_text: str = "",
) -> Run:
    """Run a libguestfs tool, its output (stdout and stderr) to ``log`` and through the parser."""
    started = time.monotonic()
    parsed = V2vOutput()
    log.write(f"$ {' '.join(argv)}\n")
    log.flush()
    if shutil.which(argv[0], path=env.get("PATH")) is None:
        parsed.errors.append(f"{argv[0]} is not installed (Debian packages virt-v2v, libguestfs-tools: `make deps`)")
        return Run(127, parsed, 0.0)
    try:
        process = subprocess.Popen(
            [*DIE_WITH_US, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
            errors="replace",
            start_new_session=False,
        )
    except FileNotFoundError:
        parsed.errors.append(f"{argv[0]} is not installed (Debian packages virt-v2v, libguestfs-tools: `make deps`)")
        return Run(127, parsed, 0.0)
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write(stdin_text)
        process.stdin.close()
    except BrokenPipeError:
        pass
    for line in process.stdout:
        log.write(line)
        phase = parsed.feed(line, time.monotonic())
        if phase is not None:
            on_phase(phase)
    log.flush()
    return Run(process.wait(), parsed, time.monotonic() - started)


def _processes_naming(paths: list[Path]) -> list[int]:
    names = [str(p).encode() for p in paths]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        if any(name in cmdline for name in names):
            found.append(int(entry.name))
    return found


def stop_leftover_tools(paths: list[Path], grace: float = 5.0) -> list[int]:
    """Stop what an earlier, killed run left serving ``paths`` (our overlays): virt-v2v starts qemu-nbd without
    tying it to its own life, so a kill -9 of virt-v2v leaves it serving the overlay. Only a run that holds the
    VM's lock calls this, so whatever names these paths is a leftover of ours. The pids that were stopped."""
    pids = _processes_naming(paths)
    for pid in pids:
        try:
            os.kill(pid, 15)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.1)
    for pid in pids:
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    return pids
