"""Boot benchmark: `migrator runtime run DIR` until the guest's marker on the console, vs bare QEMU.

Both boot the same tiny real guest (BIOS, virtio disk, virtio NIC) with the same accelerator,
alternating, 5 times each; the figure is the median of the seconds from starting the command
to the marker appearing on its stdout. Ends with ``BENCH boot ours=<s> peer=<s>``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from runtime.accel import probe_accelerator
from testbed.guestimage import DEFAULT_MARKER, build_guest
from testbed.guestimage.qemu import qemu_command

ROUNDS = 5
TIMEOUT = 180.0
MAC = "00:50:56:9a:0b:01"


def _time_to_marker(command: list[str], env: dict[str, str] | None = None) -> float:
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert process.stdout is not None
    seen = b""
    try:
        while DEFAULT_MARKER.encode() not in seen:
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                raise SystemExit(f"bench-boot: {command[0]} ended before the marker: {seen[-500:]!r}")
            seen += chunk
            if time.monotonic() - started > TIMEOUT:
                raise SystemExit(f"bench-boot: no marker within {TIMEOUT:.0f}s")
        elapsed = time.monotonic() - started
        # the guest powers itself off a second later: both commands end by themselves
        process.communicate(timeout=TIMEOUT)
        return elapsed
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _layout(directory: Path, image: Path) -> None:
    """What `migrator convert --output-dir` writes: the VirtualMachine and its disk image."""
    spec = {
        "terminationGracePeriodSeconds": 30,
        "domain": {
            "cpu": {"cores": 1},
            "memory": {"guest": "256Mi"},
            "devices": {
                "disks": [{"name": "disk0", "disk": {"bus": "virtio"}, "bootOrder": 1}],
                "interfaces": [{"name": "default", "masquerade": {}, "model": "virtio", "macAddress": MAC}],
            },
        },
        "networks": [{"name": "default", "pod": {}}],
        "volumes": [{"name": "disk0", "persistentVolumeClaim": {"claimName": "bench-boot-disk0"}}],
    }
    vm = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": "bench-boot"},
        "spec": {"runStrategy": "Always", "template": {"spec": spec}},
    }
    (directory / "bench-boot-vm.yaml").write_text(yaml.safe_dump(vm, sort_keys=False))
    subprocess.run(["cp", "--sparse=always", str(image), str(directory / "bench-boot-disk0.img")], check=True)


def main() -> None:
    accel = probe_accelerator()
    print(f"bench-boot: accelerator {accel.kind} ({accel.reason})", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-boot-") as tmp:
        root = Path(tmp)
        image = build_guest(root / "guest", behaviour="poweroff")
        out = root / "out"
        out.mkdir()
        _layout(out, image.raw)
        env = dict(os.environ, MIGRATOR_RUNTIME_DIR=str(root / "rt"))
        migrator = str(Path(sys.executable).parent / "migrator")
        ours_command = [migrator, "runtime", "run", str(out), "--accel", accel.kind]
        peer_command = qemu_command(image, accel=accel.kind, mac=MAC)
        ours: list[float] = []
        peer: list[float] = []
        for round_number in range(1, ROUNDS + 1):
            ours.append(_time_to_marker(ours_command, env))
            peer.append(_time_to_marker(peer_command))
            print(f"bench-boot: round {round_number}: ours={ours[-1]:.2f}s peer={peer[-1]:.2f}s", flush=True)
    ours_median, peer_median = statistics.median(ours), statistics.median(peer)
    print(f"bench-boot: launcher overhead {ours_median / peer_median:.2f}x bare QEMU (target <= 1.5x)")
    print(f"BENCH boot ours={ours_median:.2f} peer={peer_median:.2f}")


if __name__ == "__main__":
    main()
