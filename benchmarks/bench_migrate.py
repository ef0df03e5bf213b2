"""`make bench-migrate`: an estate of 12 VMs, `migrator migrate --max-in-flight 4` against 12 `migrator cutover`s.

The vSphere simulator serves 12 VMs, each with a monolithicSparse VMDK (512 MiB virtual, 256 MiB
of random data) read over its ``/folder`` HTTPS endpoint, to the local target. The sources are
powered off and the runs use ``--start source``: every run does the whole pipeline (preflight,
hooks, source-off, full transfer, manifests written Halted, mark-source) but boots no guest, so
the figures are the pipeline's and the transfer's, not 12 QEMUs competing for two cores.

- ours: one ``migrator migrate --max-in-flight 4`` of the 12 VMs;
- peer: the sum of 12 sequential ``migrator cutover --vm X`` runs (what one did before `migrate`);
- then ``migrate --max-rate 50MiB/s`` once, and the aggregate rate it measured: all bytes moved
  over the time from the first transfer's start to the last one's end (the ±10 % promise).

Each of ours/peer runs ``BENCH_RUNS`` times (default 3), interleaved, each into fresh state and
output directories; medians printed. Ends with ``BENCH migrate ours=<s> peer=<s>``.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from migrator import simulator
from migrator.simulator import seed

MiB = 1 << 20
VMS = 12
DATA = 256 * MiB
VIRTUAL = 512 * MiB
RATE = 50 * MiB
MIGRATOR = str(Path(sys.executable).parent / "migrator")


def _disk(work: Path) -> Path:
    raw = work / "data.raw"
    with raw.open("wb") as out:
        out.truncate(VIRTUAL)
        for offset in range(0, DATA, 16 * MiB):  # 256 MiB of data in 16 MiB runs, every other 16 MiB
            out.seek(offset * 2)
            out.write(os.urandom(16 * MiB))
    vmdk = work / "estate-disk.vmdk"
    subprocess.run(
        ["qemu-img", "convert", "-q", "-f", "raw", "-O", "vmdk", "-o", "subformat=monolithicSparse", raw, vmdk],
        check=True,
    )
    raw.unlink()
    return vmdk


def _env(sim: simulator.Simulator, state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIGRATOR_")}
    # the disks hold data, no OS for virt-v2v: guest conversion (on by default) is skipped on both sides alike
    env.update(MIGRATOR_VSPHERE_PASSWORD=sim.password, MIGRATOR_STATE_DIR=str(state), MIGRATOR_SKIP_CONVERSION="1")
    return env


def _run(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run([MIGRATOR, *args], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise SystemExit(f"bench-migrate: migrator {args[0]} exited {result.returncode}: {tail}")
    return seconds, result.stdout


def _fresh(work: Path, name: str) -> tuple[Path, Path]:
    state, out = work / f"{name}-state", work / f"{name}-out"
    shutil.rmtree(state, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    return state, out


def _ours(sim: simulator.Simulator, work: Path, plan: Path, *extra: str) -> tuple[float, str]:
    state, out = _fresh(work, "ours")
    args = ["migrate", "--plan", str(plan), "--insecure", "--output-dir", str(out), "--start", "source", *extra]
    seconds, stdout = _run(args, _env(sim, state))
    shutil.rmtree(out, ignore_errors=True)
    return seconds, stdout


def _peer(sim: simulator.Simulator, work: Path, plan: Path, names: list[str]) -> float:
    state, out = _fresh(work, "peer")
    total = 0.0
    for vm in names:
        args = ["cutover", "--plan", str(plan), "--vm", vm, "--insecure", "--output-dir", str(out)]
        total += _run([*args, "--start", "source"], _env(sim, state))[0]
    shutil.rmtree(out, ignore_errors=True)
    return total


def _aggregate_rate(stdout: str) -> tuple[float, int, float]:
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    transfers = [e for e in events if e["event"] == "step" and e.get("step") == "transfer"]
    first = min(datetime.fromisoformat(e["time"]) for e in transfers if e["status"] == "started")
    last = max(datetime.fromisoformat(e["time"]) for e in transfers if e["status"] == "done")
    moved = sum(e["bytes_moved"] for e in events if e["event"] == "vm")
    seconds = (last - first).total_seconds()
    return moved / seconds, moved, seconds


def main() -> int:
    runs = int(os.environ.get("BENCH_RUNS", "3"))
    work = Path(tempfile.mkdtemp(prefix="bench-migrate-"))
    sim = simulator.start(vms_per_pool=VMS // 2)
    try:
        vmdk = _disk(work)
        with seed.session(sim) as source:
            names = sorted(vm.name for vm in source.inventory().vms)[:VMS]
        for vm in names:
            seed.attach_disk_image(sim, vm, [vmdk], power_off=True)
        print(f"# {len(names)} VMs, each {DATA // MiB} MiB of data in a {VIRTUAL // MiB} MiB disk, over /folder HTTPS")
        plan = work / "plan.yaml"
        _run(
            ["plan", "--source", sim.source_url(), "--insecure", "--output-file", str(plan), "-o", "json"],
            _env(sim, work),
        )
        ours, peer = [], []
        for i in range(runs):
            seconds, _ = _ours(sim, work, plan, "--max-in-flight", "4", "--progress", "plain")
            ours.append(seconds)
            peer.append(_peer(sim, work, plan, names))
            print(f"# run {i + 1}: migrate --max-in-flight 4 {ours[-1]:.1f}s, 12 sequential cutovers {peer[-1]:.1f}s")
        _, stdout = _ours(sim, work, plan, "--max-in-flight", "4", "--max-rate", "50MiB/s", "--progress", "json")
        rate, moved, seconds = _aggregate_rate(stdout)
        print(
            f"# --max-rate 50MiB/s: {moved / MiB:.0f} MiB in {seconds:.1f}s = {rate / MiB:.1f} MiB/s "
            f"({100 * (rate - RATE) / RATE:+.1f} % of the limit)"
        )
        print(f"BENCH migrate ours={statistics.median(ours):.2f} peer={statistics.median(peer):.2f}")
    finally:
        sim.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
