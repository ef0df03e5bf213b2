"""``python3 -m converters.guest``: convert a guest whose images are mounted here (a cluster's conversion Job).

What a Job's pod runs, from the project's image (which ships virt-v2v): the VM's claims mounted, each
``disk.img`` converted in place by ``convert_guest`` (crash-safe: its state and overlays live on the first
claim, so a retried pod resumes or starts over, never from a half-converted image). The result is the
container's termination message (Kubernetes keeps up to 4096 bytes of ``terminationMessagePath``): the
inspection as JSON on success; on failure one line, virt-v2v's own reason. Exit status: 0 converted,
3 conversion refused (no OS, unsupported guest, a virt-v2v error: retrying gives the same answer), 2 bad
arguments. The pod's log has virt-v2v's phases. No credentials: the command takes none.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from converters.guest.convert import GuestConversionError, GuestEvent, convert_guest, forget
from converters.guest.model import Accelerator, ConversionRequest, GuestDisk, GuestNic, Inspection

REFUSED = 3  # the conversion itself failed: a Job's podFailurePolicy fails the Job at once on it
BAD_INPUT = 2
MESSAGE_LIMIT = 4096  # bytes of a termination message Kubernetes keeps
ACCEL_ENV = "MIGRATOR_ACCEL"  # as runtime.accel: kvm | tcg forced by whoever runs the pod


def nic_arg(text: str) -> GuestNic:
    """``MAC[,MODEL[,OLD-NAME]]``: ``00:50:56:8a:3c:19,vmxnet3,ens192``."""
    parts = text.split(",")
    if not parts[0] or len(parts) > 3:
        raise argparse.ArgumentTypeError(f"bad --nic {text!r}: expected MAC[,MODEL[,OLD-NAME]]")
    model = parts[1] if len(parts) > 1 and parts[1] else "vmxnet3"
    return GuestNic(
        mac=parts[0].lower(), source_model=model, old_name=parts[2] if len(parts) > 2 and parts[2] else None
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python3 -m converters.guest", description=__doc__.splitlines()[0])
    p.add_argument("--vm", required=True, help="the VM's (target) name")
    p.add_argument("--disk", action="append", required=True, type=Path, help="a raw image, in the VM's disk order")
    p.add_argument("--bus", action="append", default=[], help="each disk's source bus (scsi, sata, ide, nvme)")
    p.add_argument("--nic", action="append", default=[], type=nic_arg, help="MAC[,MODEL[,OLD-NAME]]")
    p.add_argument("--memory-mib", type=int, default=1024)
    p.add_argument("--vcpus", type=int, default=1)
    p.add_argument("--firmware", choices=("bios", "efi"), default="bios")
    p.add_argument("--root", default="first")
    p.add_argument("--windows", action="store_true")
    p.add_argument("--accelerator", choices=("auto", "kvm", "tcg"), default="auto")
    p.add_argument("--state-dir", type=Path, required=True, help="persistent: the overlays and the state record")
    p.add_argument("--fresh", action="store_true", help="the images were copied again: forget earlier conversions")
    p.add_argument("--termination-log", type=Path, default=Path("/dev/termination-log"))
    return p


def accelerator(choice: str) -> Accelerator:
    """``auto``: $MIGRATOR_ACCEL when set, else KVM where /dev/kvm is usable by this process, else TCG."""
    forced = os.environ.get(ACCEL_ENV) if choice == "auto" else choice
    if forced in ("kvm", "tcg"):
        return forced  # type: ignore[return-value]
    return "kvm" if os.access("/dev/kvm", os.R_OK | os.W_OK) else "tcg"


def message(inspection: Inspection) -> str:
    """The inspection as compact JSON within the termination message's limit (warnings cut first)."""
    data: dict[str, Any] = inspection.to_dict()
    text = json.dumps(data, separators=(",", ":"), sort_keys=True)
    while len(text.encode()) > MESSAGE_LIMIT and data["warnings"]:
        data["warnings"] = data["warnings"][:-1]
        text = json.dumps(data, separators=(",", ":"), sort_keys=True)
    return text


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as error:  # no termination log (run by hand): the output says it all
        print(f"cannot write {path}: {error.strerror}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    buses = args.bus or ["scsi"] * len(args.disk)
    if len(buses) != len(args.disk):
        print("error: give one --bus per --disk (or none)", file=sys.stderr)
        return BAD_INPUT
    request = ConversionRequest(
        name=args.vm,
        disks=tuple(GuestDisk(path=d, format="raw", source_bus=b) for d, b in zip(args.disk, buses, strict=True)),
        nics=tuple(args.nic),
        memory_mib=args.memory_mib,
        vcpus=args.vcpus,
        firmware=args.firmware,
        root=args.root,
        windows=args.windows,
        virtio_win=os.environ.get("VIRTIO_WIN") or None,
        accelerator=accelerator(args.accelerator),
        state_dir=args.state_dir,
    )
    for disk in request.disks:
        if not disk.path.is_file():
            line = f"{disk.path} is not there: is its volume mounted?"
            _write(args.termination_log, line)
            print(f"error: {line}", file=sys.stderr)
            return BAD_INPUT
    if args.fresh:
        forget(request)

    def progress(event: GuestEvent) -> None:
        print(f"convert-guest {event.vm}: [{event.elapsed:6.1f}s] {event.phase}", flush=True)

    try:
        inspection = convert_guest(request, progress)
    except GuestConversionError as error:
        line = " ".join(error.message.split())
        _write(args.termination_log, line)
        print(f"error: {line}", file=sys.stderr)
        return REFUSED
    text = message(inspection)
    _write(args.termination_log, text)
    print(text, flush=True)
    return 0
