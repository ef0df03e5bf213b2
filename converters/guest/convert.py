"""Convert a copied guest to run on KubeVirt's hardware, crash-safely.

The target images stay pristine until a conversion has fully succeeded: virt-v2v (and the NIC
pinning before it) write to qcow2 overlays backed by the images; only then are the overlays
committed into them. The state record (``<state_dir>/guest-<vm>.json``) says where a run stands:

- ``converting``: a run died while the overlays were written: a re-run discards them and starts
  again from the untouched images (never from a half-converted one);
- ``committing``: the conversion finished; a re-run commits the same overlays again (committing
  rewrites the same clusters, so it is idempotent) and finishes;
- ``done``: a re-run returns the recorded inspection without touching the images.

Order: pin NIC names (from the host with e2fsprogs through a FUSE view of the overlay when the root is a clean
ext4 partition: ``hostpin``; else guestfish inside the guest, its root mounted from the partition table when
that names it: ``rootfs``) → ``virt-v2v-in-place`` (its initramfs
rebuild then carries the pins) → commit. A pinning step that cannot open the guest leaves the
verdict to virt-v2v, so failures carry virt-v2v's own reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from converters.guest import hostpin, netnames, rootfs, virtv2v
from converters.guest.domain import domain_xml
from converters.guest.model import ConversionRequest, Inspection, NicPin
from core.errors import MigratorError

# Called with each phase virt-v2v announces (its text); nothing is registered in production. The
# tests' fault injection (tests/faults: kill -9 in the middle of virt-v2v) registers itself here.
PHASE_OBSERVERS: list[Callable[[str], None]] = []


class GuestConversionError(MigratorError):
    """virt-v2v (or libguestfs) could not convert the guest: no OS, unsupported, encrypted, or a tool error."""


@dataclass(frozen=True)
class GuestEvent:
    vm: str
    phase: str  # virt-v2v's phase text, or one of ours: "pinning NIC names", "committing", "done", "already converted"
    elapsed: float  # seconds since the conversion started

    def to_dict(self) -> dict[str, Any]:
        return {"stage": "convert-guest", **asdict(self)}


def state_path(request: ConversionRequest) -> Path:
    return request.state_dir / f"guest-{request.name}.json"


def log_path(request: ConversionRequest) -> Path:
    return request.state_dir / f"guest-{request.name}.log"


def _key(request: ConversionRequest) -> str:
    """What decides the result: the images, the NICs, root choice and drivers (not the accelerator)."""
    text = json.dumps(
        {
            "disks": [[str(d.path), d.format, d.source_bus] for d in request.disks],
            "nics": [[n.mac, n.source_model, n.old_name] for n in request.nics],
            "root": request.root,
            "virtio_win": request.virtio_win,
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _overlays(request: ConversionRequest) -> list[Path]:
    return [request.state_dir / "guest" / f"{request.name}-{i}.qcow2" for i in range(len(request.disks))]


def _images_stamp(request: ConversionRequest) -> list[list[int]]:
    stamps = []
    for disk in request.disks:
        st = disk.path.stat()
        stamps.append([st.st_size, st.st_mtime_ns])
    return stamps


def _read_state(request: ConversionRequest) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(state_path(request).read_text())
        return data if data.get("key") == _key(request) else {}
    except (OSError, ValueError):
        return {}


def _write_state(request: ConversionRequest, data: dict[str, Any]) -> None:
    path = state_path(request)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(json.dumps({**data, "key": _key(request)}, indent=2, sort_keys=True) + "\n")
    os.replace(partial, path)


def forget(request: ConversionRequest) -> None:
    """The images were copied again: whatever an earlier conversion recorded no longer applies."""
    state_path(request).unlink(missing_ok=True)
    for overlay in _overlays(request):
        overlay.unlink(missing_ok=True)


def recorded(request: ConversionRequest) -> Inspection | None:
    """The inspection of a finished conversion of these very images, if there is one."""
    state = _read_state(request)
    if state.get("phase") != "done":
        return None
    try:
        if state.get("images") != _images_stamp(request):
            return None  # the images changed since (copied again): convert again
    except OSError:
        return None
    return Inspection.from_dict(state["inspection"])


def _qemu_img(args: list[str], what: str) -> None:
    done = subprocess.run(["qemu-img", *args], capture_output=True, text=True)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise GuestConversionError(f"{what}: {lines[-1] if lines else f'qemu-img exit status {done.returncode}'}")


def _fresh_overlays(request: ConversionRequest) -> list[Path]:
    overlays = _overlays(request)
    for disk, overlay in zip(request.disks, overlays, strict=True):
        overlay.parent.mkdir(parents=True, exist_ok=True)
        overlay.unlink(missing_ok=True)
        _qemu_img(
            ["create", "-q", "-f", "qcow2", "-b", str(disk.path.resolve()), "-F", disk.format, str(overlay)],
            f"cannot create an overlay over {disk.path}",
        )
    return overlays


def _commit(request: ConversionRequest, overlays: list[Path]) -> None:
    for overlay in overlays:
        _qemu_img(["commit", "-q", "-d", "-f", "qcow2", str(overlay)], f"cannot commit the converted {overlay.name}")
    for overlay in overlays:
        overlay.unlink(missing_ok=True)


def _pins_wanted(request: ConversionRequest) -> list[tuple[str, str]]:
    if request.windows:
        return []
    return [(n.mac.lower(), n.old_name) for n in request.nics if n.old_name]


def _pin_names(
    request: ConversionRequest, overlays: list[Path], log: IO[str], emit: Callable[[str, float], None]
) -> tuple[list[NicPin], list[str], float, list[Path]]:
    """Check each NIC's VMware name against the guest's configuration and pin it to its MAC: from the host when
    it can (``hostpin``: no appliance), else in one guestfish run. The overlays to convert next (fresh ones if
    the host's attempt had to be abandoned)."""
    pins = _pins_wanted(request)
    if not pins:
        return [], [], 0.0, overlays
    emit("Pinning NIC names to their MAC addresses", 0.0)
    root = rootfs.cheap_root(request.disks, request.root)
    if root is not None and root.disk_index < len(overlays):
        view = request.state_dir / "guest" / f"{request.name}-root.view"
        try:
            output, seconds = hostpin.pin_from_host(
                pins, overlays[root.disk_index], root, view, log, virtv2v.DIE_WITH_US
            )
        except hostpin.HostPinUnavailable as error:
            log.write(f"# pinning from the host is not possible: {error}; pinning in the appliance\n")
            overlays = _fresh_overlays(request)  # whatever the attempt wrote is dropped with its overlays
        else:
            found, warnings = netnames.parse_pins(output)
            return found, warnings, seconds, overlays
    found, warnings, seconds = _pin_in_appliance(request, pins, overlays, root, log)
    return found, warnings, seconds, overlays


def _pin_in_appliance(
    request: ConversionRequest,
    pins: list[tuple[str, str]],
    overlays: list[Path],
    root: rootfs.RootPartition | None,
    log: IO[str],
) -> tuple[list[NicPin], list[str], float]:
    """The pinning in libguestfs's appliance (guestfish): the root mounted straight away when the partition
    tables name it, else found by libguestfs's inspection (-i)."""
    mount = root.device if root is not None else None
    seconds = 0.0
    with tempfile.TemporaryDirectory(prefix="migrator-pin-") as tmp:
        script = Path(tmp) / "pin.sh"
        script.write_text(netnames.pin_script(pins))
        commands = Path(tmp) / "commands"
        commands.write_text(
            f"upload {script} /tmp/migrator-pin.sh\nsh '/bin/sh /tmp/migrator-pin.sh'\nrm /tmp/migrator-pin.sh\n"
        )
        for how in ([["-m", mount]] if mount else []) + [["-i"]]:
            argv = [virtv2v.GUESTFISH, "--no-progress-bars", "--keys-from-stdin"]
            for overlay in overlays:
                argv += ["--format=qcow2", "-a", str(overlay)]
            argv += [*how, "-f", str(commands)]
            run = virtv2v.run_tool(argv, virtv2v.libguestfs_env(request.accelerator), log)
            seconds += run.seconds
            if run.returncode == 0 and netnames.NOT_ROOT not in run.output.marked:
                break
            if how != ["-i"]:
                log.write(f"# {mount} is not the guest's root (or does not mount): inspecting the guest (-i)\n")
    if run.returncode != 0:
        # No OS, an encrypted root, an unreadable disk: virt-v2v runs next and gives its own verdict.
        reason = run.output.reason() or f"guestfish exited with status {run.returncode}"
        return [], [f"NIC names were not pinned: {reason}"], seconds
    pins_found, warnings = netnames.parse_pins("\n".join(run.output.marked))
    return pins_found, warnings, seconds


def convert_guest(request: ConversionRequest, on_event: Callable[[GuestEvent], None] = lambda _e: None) -> Inspection:
    """Convert the guest on ``request.disks`` in place, crash-safely; failures raise GuestConversionError."""
    if not request.disks:
        raise GuestConversionError(f"VM {request.name} has no disks to convert")
    request.state_dir.mkdir(parents=True, exist_ok=True)

    def emit(phase: str, elapsed: float) -> None:
        on_event(GuestEvent(request.name, phase, round(elapsed, 1)))

    done = recorded(request)
    if done is not None:
        emit("already converted", 0.0)
        return done
    state = _read_state(request)
    overlays = _overlays(request)
    if state.get("phase") == "committing" and all(o.exists() for o in overlays):
        emit("Committing the converted disks (resumed)", 0.0)
        inspection = Inspection.from_dict(state["inspection"])
        _commit(request, overlays)
        _write_state(request, {"phase": "done", "inspection": inspection.to_dict(), "images": _images_stamp(request)})
        emit("done", 0.0)
        return inspection

    # Fresh, or an earlier run died while converting: its overlays are discarded, the images were never touched.
    _write_state(request, {"phase": "converting"})
    virtv2v.stop_leftover_tools(overlays)  # a killed run's qemu-nbd may still serve them
    overlays = _fresh_overlays(request)
    with log_path(request).open("w") as log:
        pins, pin_warnings, pin_seconds, overlays = _pin_names(request, overlays, log, emit)
        xml_path = request.state_dir / "guest" / f"{request.name}.xml"
        xml_path.write_text(domain_xml(request, overlays))

        def on_phase(phase: virtv2v.Phase) -> None:
            emit(phase.text, phase.elapsed)
            for observer in PHASE_OBSERVERS:
                observer(phase.text)

        run = virtv2v.run_tool(
            virtv2v.in_place_command(request, xml_path),
            virtv2v.libguestfs_env(request.accelerator, request.virtio_win),
            log,
            on_phase,
        )
    if run.returncode != 0:
        reason = run.output.reason() or f"{virtv2v.IN_PLACE} exited with status {run.returncode}"
        for overlay in overlays:
            overlay.unlink(missing_ok=True)
        state_path(request).unlink(missing_ok=True)
        raise GuestConversionError(f"guest conversion of {request.name} failed: {reason} (log: {log_path(request)})")
    inspection = run.output.inspection(request.name)
    inspection.nic_pins = pins
    inspection.warnings = pin_warnings + inspection.warnings
    if pin_seconds:
        inspection.seconds["nic_pinning"] = round(pin_seconds, 1)
    inspection.seconds["virt_v2v"] = round(run.seconds, 1)
    _write_state(request, {"phase": "committing", "inspection": inspection.to_dict()})
    emit("Committing the converted disks", run.seconds)
    committing = time.monotonic()
    _commit(request, overlays)
    inspection.seconds["commit"] = round(time.monotonic() - committing, 1)
    _write_state(request, {"phase": "done", "inspection": inspection.to_dict(), "images": _images_stamp(request)})
    emit("done", run.seconds)
    return inspection
