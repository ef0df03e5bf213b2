"""`make bench-warm`: the downtime of a warm cutover against a cold one of an identical VM (issue 14).

Two VMs on the vSphere simulator (with its changed-block tracking), each with a 4 GiB flat disk
holding 1 GiB of random data. The warm one: `migrator cutover --warm` copies it while it runs;
after the first precopy round 32 MiB change in 200 scattered places (writes into the disk's file
in the datastore directory, as a guest's writes land there); then `migrator cutover --now` from
another process: source off, final snapshot, final delta (those 32 MiB), start. The cold one:
`migrator cutover`: source off, full copy, start. Downtime = source off → target Running, from
`migrator status -o json`.

Also: the final delta's throughput against curl fetching the same extents with Range requests
(one curl process, one connection), and the checks: the final image equals the source disk
(`qemu-img compare`) and no snapshot remains on the source.

Ends with `BENCH warm-downtime ours=<warm s> peer=<cold s>` (one run each by default; set
BENCH_WARM_RUNS for more, then medians).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

GiB = 1 << 30
MiB = 1 << 20
SIZE = 4 * GiB
CHANGES = 200
CHANGE_BYTES = 32 * MiB // CHANGES // 4096 * 4096  # 160 KiB each, 200 of them: 31.25 MiB
MIGRATOR = Path(sys.executable).parent / "migrator"
ROOT = Path(__file__).resolve().parent.parent


def _disk(flat: Path) -> None:
    """1 GiB of random data in four 256 MiB regions of a sparse 4 GiB file (the first MiB left zero)."""
    fd = os.open(flat, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, SIZE)
        for base in (1 * MiB, 1 * GiB, 2 * GiB + 512 * MiB, 3 * GiB + 256 * MiB):
            for off in range(0, 256 * MiB, 64 * MiB):
                os.pwrite(fd, os.urandom(64 * MiB), base + off)
        os.fsync(fd)
    finally:
        os.close(fd)


def _descriptor(path: Path, flat_name: str) -> None:
    path.write_text(
        '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="vmfs"\n\n'
        f'RW {SIZE // 512} VMFS "{flat_name}"\n\n# The Disk Data Base\n#DDB\nddb.adapterType = "lsilogic"\n'
    )


def _scatter(flat: Path, seed: int) -> list[tuple[int, int]]:
    """200 writes of 160 KiB at 64 KiB-aligned offsets in distinct 16 MiB slots; returns (offset, length)."""
    rng = random.Random(seed)
    slots = sorted(rng.sample(range(SIZE // (16 * MiB)), CHANGES))
    writes = [(slot * 16 * MiB + rng.randrange(0, 200) * 64 * 1024, CHANGE_BYTES) for slot in slots]
    fd = os.open(flat, os.O_WRONLY)
    try:
        for offset, length in writes:
            os.pwrite(fd, os.urandom(length), offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    return writes


class Bench:
    def __init__(self, work: Path) -> None:
        from migrator import simulator

        self.work = work
        self.sim = simulator.start(vms_per_pool=1)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MIGRATOR_")}
        self.env.update(
            MIGRATOR_VSPHERE_PASSWORD=self.sim.password,
            MIGRATOR_STATE_DIR=str(work / "state"),
            MIGRATOR_RUNTIME_DIR=str(work / "runtime"),
            MIGRATOR_SKIP_CONVERSION="1",  # random data, no OS for virt-v2v: the same for warm and cold
        )

    def migrator(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(MIGRATOR), *args], capture_output=True, text=True, env=self.env)
        if result.returncode != 0:
            raise SystemExit(
                f"bench-warm: migrator {' '.join(args[:3])} failed: {(result.stdout + result.stderr)[-800:]}"
            )
        return result

    def cutover_args(self, vm: str, out: Path) -> list[str]:
        return ["cutover", "--source", self.sim.source_url(), "--insecure", "--vm", vm, "--output-dir", str(out)]

    def status(self, vm: str) -> dict[str, Any]:
        report: dict[str, Any] = json.loads(self.migrator("status", "--vm", vm, "-o", "json").stdout)
        return report

    def vm(self, template: str, name: str) -> Path:
        """Rename ``template`` to ``name`` (own UUIDs), give it the 4 GiB disk, CBT on; returns its flat file."""
        from pyVmomi import vim

        from migrator.simulator import seed
        from migrator.sources.vsphere.operations import wait_for_task

        staged = self.work / f"{name}-stage"
        staged.mkdir()
        _descriptor(staged / f"{name}.vmdk", f"{name}-flat.vmdk")
        (staged / f"{name}-flat.vmdk").touch()  # a placeholder: the real 4 GiB file is put in place below
        with seed.session(self.sim) as source:
            found = source.find_vm(template)
            wait_for_task(found.Rename_Task(newName=name), "rename")
            spec = vim.vm.ConfigSpec(uuid=str(uuid.uuid4()), instanceUuid=str(uuid.uuid4()))
            wait_for_task(found.ReconfigVM_Task(spec=spec), "uuids")
            backing = seed.attach_disk_image(
                source, name, [staged / f"{name}.vmdk", staged / f"{name}-flat.vmdk"], capacity_bytes=SIZE
            )
            task = source.find_vm(name).ReconfigVM_Task(spec=vim.vm.ConfigSpec(changeTrackingEnabled=True))
            wait_for_task(task, "enable CBT")
            ds_name, rel = backing[1:].split("] ", 1)
            content = source.service_instance.content
            view = content.viewManager.CreateContainerView(content.rootFolder, [vim.Datastore], True)
            ds_dir = Path(next(d for d in view.view if d.name == ds_name).info.url)
            view.Destroy()
        flat = ds_dir / rel.replace(".vmdk", "-flat.vmdk")
        _disk(flat)  # straight into the datastore directory: a 4 GiB PUT through vcsim would only add set-up
        shutil.rmtree(staged)
        return flat

    def snapshots(self, vm: str) -> list[str]:
        from migrator.simulator import seed

        with seed.session(self.sim) as source:
            return [s.name for s in source.vm_inventory(vm).snapshots]

    def curl_extents(self, vm: str, extents: list[tuple[int, int]]) -> float:
        """curl fetching the same extents of the flat file with Range requests, one process, one connection."""
        from migrator.simulator import seed

        with seed.session(self.sim) as source:
            file = next(d.backing_file for d in source.vm_inventory(vm).disks)
            url = source.datastore_file_url(file.replace(".vmdk", "-flat.vmdk"))
            cookie = source.http_headers().get("Cookie", "")
            config = self.work / "curl.conf"
            config.touch(mode=0o600)
            lines = []
            for start, length in extents:  # options after `next` start afresh: each transfer states its own
                lines += [f'url = "{url}"', f"range = {start}-{start + length - 1}", "output = /dev/null"]
                lines += ["insecure", "silent", "fail", f'header = "Cookie: {cookie}"', "next"]
            config.write_text("\n".join(lines[:-1]) + "\n")
            started = time.perf_counter()
            subprocess.run(["curl", "-K", str(config)], check=True)
            return time.perf_counter() - started

    def stop(self, *targets: str) -> None:
        """Stop the targets: a short grace, then the launcher is killed (its domain goes with it)."""
        for target in targets:
            pid_file = self.work / "runtime" / target / "launcher.pid"
            if pid_file.exists():
                subprocess.run(
                    [str(MIGRATOR), "runtime", "stop", target, "--timeout", "5"], capture_output=True, env=self.env
                )
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
            except (OSError, ValueError):
                pass  # gone already

    def close(self) -> None:
        self.sim.stop()


def warm_run(bench: Bench, vm: str, flat: Path) -> dict[str, float]:
    out = bench.work / f"out-{vm}"
    args = [str(MIGRATOR), *bench.cutover_args(vm, out), "--warm", "--precopy-interval", "1h"]
    loop = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=bench.env)
    try:
        deadline = time.monotonic() + 600
        while True:
            if loop.poll() is not None:
                raise SystemExit(f"bench-warm: the warm cutover exited early: {loop.communicate()[0][-800:]}")
            probe = subprocess.run(
                [str(MIGRATOR), "status", "--vm", vm, "-o", "json"], capture_output=True, text=True, env=bench.env
            )
            rounds = json.loads(probe.stdout).get("rounds") if probe.returncode == 0 else None
            if rounds and rounds[0].get("finished_at"):
                break
            if time.monotonic() > deadline:
                raise SystemExit("bench-warm: the first precopy round did not finish within 10 minutes")
            time.sleep(0.5)
        first = rounds[0]
        _scatter(flat, seed=14)
        bench.migrator("cutover", "--vm", vm, "--now")
        output, _ = loop.communicate(timeout=900)
    finally:
        if loop.poll() is None:
            loop.kill()
    if loop.returncode != 0:
        raise SystemExit(f"bench-warm: the warm cutover failed: {output[-800:]}")
    print("\n".join(line for line in output.splitlines() if line.startswith("round ")), flush=True)
    report = bench.status(vm)
    final = next(r for r in report["rounds"] if r["kind"] == "final")
    [disk] = final["disks"].values()
    image = out / f"{vm}-disk-0.img"
    subprocess.run(["qemu-img", "compare", "-q", "-f", "raw", "-F", "raw", str(flat), str(image)], check=True)
    left = bench.snapshots(vm)
    if left:
        raise SystemExit(f"bench-warm: snapshots left on {vm}: {left}")
    extents = _final_extents(bench, report)
    curl = bench.curl_extents(vm, extents)
    print(
        f"warm {vm}: first precopy {first['bytes'] / MiB:.0f} MiB in {first['seconds']:.2f}s; "
        f"final delta {disk['bytes'] / MiB:.2f} MiB in {disk['extents']} extents, {disk['seconds']:.2f}s "
        f"({disk['bytes'] / MiB / disk['seconds']:.1f} MiB/s); curl Range of the same extents {curl:.2f}s "
        f"({disk['bytes'] / MiB / curl:.1f} MiB/s); downtime {report['downtime_seconds']:.2f}s",
        flush=True,
    )
    steps = ", ".join(f"{s['step']} {s['seconds']:.2f}s" for s in report["steps"] if s["step"] != "precopy")
    print(f"warm {vm}: steps {steps}", flush=True)
    return {"downtime": report["downtime_seconds"], "delta": disk["seconds"], "curl": curl, "bytes": disk["bytes"]}


def _final_extents(bench: Bench, report: dict[str, Any]) -> list[tuple[int, int]]:
    """The extents the final round copied, asked again of the simulator (the change ids are recorded)."""
    from migrator.simulator import seed
    from migrator.sources.vsphere.changes import VSphereChanges

    precopy = [r for r in report["rounds"] if r["kind"] == "precopy"][-1]
    final = next(r for r in report["rounds"] if r["kind"] == "final")
    [(claim, disk)] = final["disks"].items()
    base = precopy["disks"][claim]["change_id"]
    with seed.session(bench.sim) as source:
        changes = VSphereChanges(source)
        snapshot = changes.create_snapshot(report["vm"], "bench-extents", quiesce=False)
        try:
            [d] = changes.snapshot_disks(snapshot.id)
            from migrator.cutover.precopy import changed_extents

            return changed_extents(changes, report["vm"], snapshot.id, d, base)
        finally:
            changes.remove_snapshot(report["vm"], snapshot.id)


def cold_run(bench: Bench, vm: str, flat: Path) -> float:
    out = bench.work / f"out-{vm}"
    bench.migrator(*bench.cutover_args(vm, out))
    report = bench.status(vm)
    image = out / f"{vm}-disk-0.img"
    subprocess.run(["qemu-img", "compare", "-q", "-f", "raw", "-F", "raw", str(flat), str(image)], check=True)
    steps = ", ".join(f"{s['step']} {s['seconds']:.2f}s" for s in report["steps"])
    print(f"cold {vm}: full copy, downtime {report['downtime_seconds']:.2f}s; steps {steps}", flush=True)
    return float(report["downtime_seconds"])


def main() -> None:
    runs = int(os.environ.get("BENCH_WARM_RUNS", "1"))
    warm: list[dict[str, float]] = []
    cold: list[float] = []
    for i in range(runs):
        work = Path(
            tempfile.mkdtemp(prefix="bench-warm-", dir=ROOT / "bench-out" if (ROOT / "bench-out").is_dir() else None)
        )
        bench = Bench(work)
        try:
            flat_warm = bench.vm("DC0_H0_VM0", f"bench-warm-{i}")
            flat_cold = bench.vm("DC0_C0_RP0_VM0", f"bench-cold-{i}")
            try:
                warm.append(warm_run(bench, f"bench-warm-{i}", flat_warm))
                cold.append(cold_run(bench, f"bench-cold-{i}", flat_cold))
            finally:
                bench.stop(f"bench-warm-{i}", f"bench-cold-{i}")
        finally:
            bench.close()
            shutil.rmtree(work, ignore_errors=True)
    delta = statistics.median(w["delta"] for w in warm)
    curl = statistics.median(w["curl"] for w in warm)
    moved = statistics.median(w["bytes"] for w in warm) / MiB
    rates = f"{moved:.1f} MiB: {moved / delta:.1f} vs {moved / curl:.1f} MiB/s"
    print(f"delta round throughput: ours {delta:.2f}s, curl Range requests {curl:.2f}s ({rates})")
    print(f"BENCH warm-delta ours={delta:.2f} peer={curl:.2f}")
    downtime = statistics.median(w["downtime"] for w in warm)
    print(f"BENCH warm-downtime ours={downtime:.2f} peer={statistics.median(cold):.2f}")


if __name__ == "__main__":
    main()
