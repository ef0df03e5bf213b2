"""Guest-conversion benchmark: our conversion stage vs the same `virt-v2v-in-place` run directly.

Both convert a fresh sparse copy of the VMware-shaped Debian 12 guest (testbed.debian_guest) with
the same accelerator. Ours is ``converters.guest.convert_guest`` as `convert` runs it: a qcow2
overlay, the NIC-name pinning (guestfish), ``virt-v2v-in-place -v -i libvirtxml --root first`` on
the overlay, then the commit. The peer is that same virt-v2v-in-place command on the raw image
directly. Alternating, ``BENCH_ROUNDS`` times each (default 1: a round is minutes under TCG); the
figures are medians. Prints how the time splits (appliance start, inspection, initramfs rebuild,
NIC pinning, commit) and ends with ``BENCH convert-guest ours=<s> peer=<s>``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from converters.guest import ConversionRequest, GuestDisk, GuestNic, convert_guest
from converters.guest.domain import domain_xml
from converters.guest.virtv2v import in_place_command, libguestfs_env, run_tool
from runtime.accel import probe_accelerator
from testbed.debian_guest import build_debian_guest

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1"))


def _copy(source: Path, dest: Path) -> None:
    subprocess.run(["cp", "--sparse=always", str(source), str(dest)], check=True)


def _request(image: Path, state: Path, accelerator: str) -> ConversionRequest:
    guest = build_debian_guest()
    return ConversionRequest(
        name="bench-guest",
        disks=(GuestDisk(image, "raw", "scsi"),),
        nics=(GuestNic(guest.mac, "vmxnet3", f"ens{guest.pci_slot}", "VM Network"),),
        accelerator=accelerator,  # type: ignore[arg-type]
        state_dir=state,
    )


def ours(work: Path, accelerator: str) -> tuple[float, dict[str, float]]:
    image = work / "ours.img"
    _copy(build_debian_guest().raw, image)
    started = time.monotonic()
    inspection = convert_guest(_request(image, work / "ours-state", accelerator))
    return time.monotonic() - started, inspection.seconds


def peer(work: Path, accelerator: str) -> tuple[float, dict[str, float]]:
    image = work / "peer.img"
    _copy(build_debian_guest().raw, image)
    request = _request(image, work / "peer-state", accelerator)
    xml = work / "peer.xml"
    xml.write_text(domain_xml(request))
    with (work / "peer.log").open("w") as log:
        run = run_tool(in_place_command(request, xml), libguestfs_env(request.accelerator), log)
    if run.returncode != 0:
        raise SystemExit(f"bench-convert-guest: the peer failed: {run.output.reason()}")
    return run.seconds, run.output.seconds()


def main() -> int:
    accelerator = probe_accelerator().kind
    print(f"# accelerator: {accelerator}; guest: {build_debian_guest().raw}", flush=True)
    times: dict[str, list[float]] = {"ours": [], "peer": []}
    splits: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-convert-guest-") as tmp:
        for round_ in range(ROUNDS):
            order = (("ours", ours), ("peer", peer)) if round_ % 2 == 0 else (("peer", peer), ("ours", ours))
            for name, run in order:
                work = Path(tmp) / f"{name}-{round_}"
                work.mkdir()
                seconds, split = run(work, accelerator)
                times[name].append(seconds)
                splits[name] = split
                parts = ", ".join(f"{k} {v:.1f}s" for k, v in sorted(split.items()))
                print(f"# round {round_ + 1} {name}: {seconds:.1f}s ({parts})", flush=True)
    ours_s, peer_s = statistics.median(times["ours"]), statistics.median(times["peer"])
    print(f"# ours/peer = {ours_s / peer_s:.2f}")
    print(f"BENCH convert-guest ours={ours_s:.1f} peer={peer_s:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
