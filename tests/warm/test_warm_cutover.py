"""Warm cutover end to end on the vSphere simulator (with its changed-block tracking), through the real CLI.

The VM's disk is the tiny real guest as a flat VMDK, grown so that "guest writes" (writes into the
disk's flat file in the datastore directory) land beyond the guest's own data. The target boots
on the local runtime; every local VM started here is stopped in teardown.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pyVmomi import vim

from core.wait import wait_until
from migrator import simulator
from migrator.simulator import seed
from migrator.sources.vsphere.operations import wait_for_task
from testbed.demo import seed_guest_vm
from testbed.guestimage import build_guest
from tests.cutover.test_cutover_e2e import Run
from tests.faults import kill_in_round_env
from tests.warm.cbt_env import datastore_path, enable_cbt, flat_vmdk, guest_writes, rename, snapshot_names

MIGRATOR = Path(sys.executable).parent / "migrator"
MiB = 1 << 20
KERNEL_RUNS = re.compile(r"^\[\s*\d+\.\d+\] |MIGRATOR-GUEST-READY", re.MULTILINE)
MACS = {"warm-accept": "00:50:56:3a:7c:01", "warm-kill": "00:50:56:3a:7c:02", "warm-fail": "00:50:56:3a:7c:03"}
MACS |= {"warm-rollback": "00:50:56:3a:7c:04", "warm-reset": "00:50:56:3a:7c:05", "warm-cbt": "00:50:56:3a:7c:06"}
MACS |= {"warm-chain": "00:50:56:3a:7c:07", "warm-at": "00:50:56:3a:7c:08"}
NAMES = {  # a VM name (and so a libvirt domain name) per test
    "test_acceptance_warm_cutover_with_now_from_another_shell": "warm-accept",
    "test_kill_9_mid_delta_resumes_without_copying_again": "warm-kill",
    "test_failure_removes_every_snapshot": "warm-fail",
    "test_rollback_after_kill_removes_every_snapshot": "warm-rollback",
    "test_rejected_change_id_falls_back_to_a_full_copy": "warm-reset",
    "test_cbt_off_is_critical_and_enable_cbt_turns_it_on": "warm-cbt",
    "test_a_snapshot_chain_of_the_users_is_refused": "warm-chain",
    "test_cutover_at_a_time_without_now": "warm-at",
}
NO_CBT = {"warm-cbt"}
DISK = 96 * MiB
WRITABLE = (70 * MiB, 94 * MiB)  # beyond the 64 MiB guest image: writes there never break its boot


@dataclass
class Warm(Run):
    """A cold cutover's run (its VM, output, environment), warm, with the flat disk the source writes to."""

    flat: Path

    @property
    def image(self) -> Path:
        return self.out / f"{self.target}-disk-0.img"

    def args(self, *extra: str) -> list[str]:
        return [str(MIGRATOR), "cutover", "--source", self.sim.source_url(), "--insecure", "--vm", self.vm, *extra]

    def warm_args(self, *extra: str) -> list[str]:
        """`migrator cutover --warm --vm NAME --precopy-interval 5 --output-dir OUT` (the Acceptance command)."""
        return self.args("--warm", "--precopy-interval", "5", "--output-dir", str(self.out), *extra)

    def start(self, *extra: str, **env: str) -> subprocess.Popen[str]:
        """The warm cutover in its own process."""
        args = self.warm_args(*extra)
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env(**env))

    def migrator(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(MIGRATOR), *args], capture_output=True, text=True, timeout=600, env=self.env(**env))

    def status(self) -> dict:
        result = self.migrator("status", "--vm", self.vm, "-o", "json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def wait_rounds(self, n: int, loop: subprocess.Popen[str], timeout: float = 180) -> dict:
        def rounds_done() -> dict | None:
            if loop.poll() is not None:
                raise AssertionError(f"the warm cutover exited {loop.returncode}: {loop.communicate()[0]}")
            result = self.migrator("status", "--vm", self.vm, "-o", "json")
            if result.returncode != 0:
                return None
            report: dict = json.loads(result.stdout)
            done = [r for r in report.get("rounds", []) if r["kind"] == "precopy" and r["finished_at"]]
            return report if len(done) >= n else None

        report = wait_until(rounds_done, timeout=timeout, interval=0.5)
        if report is None:
            raise AssertionError(f"fewer than {n} precopy rounds within {timeout}s")
        return report

    def console(self) -> str:
        path = self.base / "runtime" / self.target / "console.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_target(self) -> None:
        # The launcher is killed at once (its transient domain goes with its libvirt connection): these tests
        # need no clean shutdown, and an ACPI request would wait out its grace before the guest is up.
        pid_file = self.base / "runtime" / self.target / "launcher.pid"
        try:
            pid = int(pid_file.read_text().strip())
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            return  # not started, or gone already

        def gone() -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return False

        wait_until(gone, timeout=15, interval=0.1)

    def same_as_source(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["qemu-img", "compare", "-f", "raw", "-F", "raw", str(self.flat), str(self.image)],
            capture_output=True,
            text=True,
        )


# Tests whose simulator ends a session idle this long (seconds), as vCenter does after 30 minutes: shorter than
# the wait between two rounds (5 s), so the loop's keep-alives must hold the session.
SESSION_IDLE_TIMEOUT = {"test_cutover_at_a_time_without_now": 1.5}


@pytest.fixture(scope="module")
def guest_flat(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    guest = build_guest(behaviour="wait")
    work = tmp_path_factory.mktemp("warm-guest")
    raw = work / "warm.raw"
    subprocess.run(["cp", "--sparse=always", str(guest.raw), str(raw)], check=True)
    os.truncate(raw, DISK)
    return flat_vmdk(raw, work / "vmdk", "warmguest")


@pytest.fixture
def warm(request: pytest.FixtureRequest, tmp_path: Path, guest_flat: list[Path]) -> Iterator[Warm]:
    idle = SESSION_IDLE_TIMEOUT.get(request.node.name)
    # 96 MiB disk: three pages per query
    sim = simulator.start(vms_per_pool=1, cbt_page_bytes=32 * MiB, session_idle_timeout=idle)
    run: Warm | None = None
    try:
        vm = rename(sim, "DC0_H0_VM0", NAMES[request.node.name])
        backing = seed_guest_vm(sim, vm, guest_flat, mac=MACS[vm])  # the guest's disk, MAC and memory
        if vm not in NO_CBT:
            enable_cbt(sim, vm)
        run = Warm(sim, tmp_path, vm, datastore_path(sim, backing.replace(".vmdk", "-flat.vmdk")))
        yield run
    finally:
        if run is not None:
            run.stop_target()
        sim.stop()


def test_acceptance_warm_cutover_with_now_from_another_shell(warm: Warm) -> None:
    loop = warm.start()
    try:
        warm.wait_rounds(1, loop)
        guest_writes(warm.flat, 20, 8192, seed_value=7, region=WRITABLE)  # the guest writes while it runs
        report = warm.wait_rounds(2, loop)
        guest_writes(warm.flat, 10, 4096, seed_value=8, region=WRITABLE)
        assert report["status"] == "running" and report["next_precopy_at"] is not None
        now = warm.migrator("cutover", "--vm", warm.vm, "--now")  # the second shell
        assert now.returncode == 0, now.stdout + now.stderr
        assert "requested" in now.stdout
        output, _ = loop.communicate(timeout=600)
    finally:
        if loop.poll() is None:
            loop.kill()
    assert loop.returncode == 0, output
    report = warm.status()
    assert report["status"] == "completed", report
    precopies = [r for r in report["rounds"] if r["kind"] == "precopy"]
    assert len(precopies) >= 2
    assert precopies[0]["disks"][f"{warm.target}-disk-0"]["mode"] == "full"
    assert all(d["mode"] == "delta" for r in precopies[1:] for d in r["disks"].values())
    # every block written after round 1 (20, then 10) went in a later round: a delta, never a full copy
    assert sum(r["bytes"] for r in report["rounds"] if r["round"] > 1) >= 30 * 64 << 10
    final = [r for r in report["rounds"] if r["kind"] == "final"]
    assert len(final) == 1 and all(d["mode"] == "delta" for d in final[0]["disks"].values())
    assert report["downtime_seconds"] > 0
    # No guest conversion follows the final delta: the target was launched paused before it, and `start` resumed it
    prestart = next(s for s in report["steps"] if s["step"] == "prestart")
    assert "launched paused" in prestart["detail"], report["steps"]
    compare = warm.same_as_source()
    assert compare.returncode == 0, compare.stdout + compare.stderr
    assert snapshot_names(warm.sim, warm.vm) == []
    # The copy boots: syslinux loads the kernel from it and the kernel runs (its first timestamped line).
    # The marker comes later; under TCG on a loaded host this guest kernel sometimes panics in its timer
    # check ("IO-APIC + timer doesn't work"), which says nothing about the disk.
    deadline = time.monotonic() + 240
    while not KERNEL_RUNS.search(warm.console()) and time.monotonic() < deadline:
        time.sleep(1)
    assert "SYSLINUX" in warm.console() and KERNEL_RUNS.search(warm.console()), warm.console()


def _finish(warm: Warm, loop: subprocess.Popen[str]) -> str:
    now = warm.migrator("cutover", "--vm", warm.vm, "--now")
    assert now.returncode == 0, now.stdout + now.stderr
    output, _ = loop.communicate(timeout=600)
    assert loop.returncode == 0, output
    report = warm.status()
    assert report["status"] == "completed", report
    compare = warm.same_as_source()
    assert compare.returncode == 0, compare.stdout + compare.stderr
    assert snapshot_names(warm.sim, warm.vm) == []
    return output


def test_kill_9_mid_delta_resumes_without_copying_again(warm: Warm) -> None:
    claim = f"{warm.target}-disk-0"
    loop = warm.start(**kill_in_round_env(2, 10 * MiB))
    try:
        warm.wait_rounds(1, loop)
        guest_writes(warm.flat, 32, 512 << 10, seed_value=3, region=WRITABLE)  # 16 MiB before round 2
        output, _ = loop.communicate(timeout=120)
    finally:
        if loop.poll() is None:
            loop.kill()
    assert loop.returncode == -9, output  # killed in the middle of round 2's delta
    assert snapshot_names(warm.sim, warm.vm) == ["migrator-precopy-2"]

    loop = warm.start()  # the same command again
    try:
        report = warm.wait_rounds(2, loop)
        round2 = next(r for r in report["rounds"] if r["round"] == 2)["disks"][claim]
        assert round2["mode"] == "delta" and round2["bytes"] == 16 * MiB
        output = _finish(warm, loop)
    finally:
        if loop.poll() is None:
            loop.kill()
    assert "round 2: resuming from snapshot migrator-precopy-2" in output
    assert "resumed after" in output
    again = [line for line in output.splitlines() if line.startswith(f"round 2: {claim}: delta")]
    assert again and "resumed after" in again[0]


def test_failure_removes_every_snapshot(warm: Warm) -> None:
    loop = warm.start()
    try:
        warm.wait_rounds(1, loop)
        warm.image.unlink()  # the target's copy is lost: round 2 has nothing to apply its changes to
        guest_writes(warm.flat, 4, 4096, seed_value=4, region=WRITABLE)
        output, _ = loop.communicate(timeout=120)
    finally:
        if loop.poll() is None:
            loop.kill()
    assert loop.returncode == 4, output
    assert "no earlier copy to apply changes to" in output
    assert "cleanup: removed snapshot(s) migrator-precopy-2" in output
    assert snapshot_names(warm.sim, warm.vm) == []
    assert warm.status()["status"] == "failed"


def test_rollback_after_kill_removes_every_snapshot(warm: Warm) -> None:
    loop = warm.start(**kill_in_round_env(1, 1 * MiB))
    output, _ = loop.communicate(timeout=120)
    assert loop.returncode == -9, output
    assert snapshot_names(warm.sim, warm.vm) == ["migrator-precopy-1"]
    rolled = warm.migrator("cutover", "--rollback", "--vm", warm.vm, "--insecure")
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert "removed snapshot(s) migrator-precopy-1" in rolled.stdout
    assert snapshot_names(warm.sim, warm.vm) == []
    assert warm.status()["status"] == "rolled_back"


def test_rejected_change_id_falls_back_to_a_full_copy(warm: Warm) -> None:
    claim = f"{warm.target}-disk-0"
    loop = warm.start()
    try:
        warm.wait_rounds(1, loop)
        with seed.session(warm.sim) as source:  # CBT reset: off and on again; earlier changeIds are void
            for on in (False, True):
                task = source.find_vm(warm.vm).ReconfigVM_Task(spec=vim.vm.ConfigSpec(changeTrackingEnabled=on))
                wait_for_task(task, "toggle CBT")
        guest_writes(warm.flat, 6, 4096, seed_value=5, region=WRITABLE)
        report = warm.wait_rounds(2, loop)
        output = _finish(warm, loop)
    finally:
        if loop.poll() is None:
            loop.kill()
    round2 = next(r for r in report["rounds"] if r["round"] == 2)["disks"][claim]
    assert round2["mode"] == "full" and "changeId rejected" in round2["note"]
    assert "changeId rejected by vSphere (tracking was reset), full copy instead" in output
    assert any("changeId rejected" in f for f in warm.status()["full_copy_fallbacks"])
    table = warm.migrator("status", "--vm", warm.vm)
    assert "fallback: round 2" in table.stdout


def test_cbt_off_is_critical_and_enable_cbt_turns_it_on(warm: Warm) -> None:
    refused = subprocess.run(warm.warm_args(), capture_output=True, text=True, env=warm.env(), timeout=120)
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert "Critical concern cbt-disabled" in refused.stderr and "--enable-cbt" in refused.stderr
    assert "the source was not touched" in refused.stderr
    assert snapshot_names(warm.sim, warm.vm) == []

    loop = warm.start("--enable-cbt", **kill_in_round_env(1, 1 * MiB))
    output, _ = loop.communicate(timeout=120)
    assert loop.returncode == -9, output
    assert "changed-block tracking turned on for warm-cbt (temporary snapshot migrator-cbt-enable)" in output
    with seed.session(warm.sim) as source:
        live = source.vm_inventory(warm.vm)
    assert live.cbt_enabled is True and all(d.cbt_enabled for d in live.disks)
    rolled = warm.migrator("cutover", "--rollback", "--vm", warm.vm, "--insecure")
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert snapshot_names(warm.sim, warm.vm) == []


def test_a_snapshot_chain_of_the_users_is_refused(warm: Warm) -> None:
    with seed.session(warm.sim) as source:
        task = source.find_vm(warm.vm).CreateSnapshot_Task(name="before-upgrade", memory=False, quiesce=False)
        wait_for_task(task, "the user's snapshot")
    refused = subprocess.run(warm.warm_args(), capture_output=True, text=True, env=warm.env(), timeout=120)
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert "Critical concern warm-snapshot-chain" in refused.stderr and "before-upgrade" in refused.stderr
    assert snapshot_names(warm.sim, warm.vm) == ["before-upgrade"]  # theirs, untouched


def test_cutover_at_a_time_without_now(warm: Warm) -> None:
    at = (datetime.now(UTC) + timedelta(seconds=12)).isoformat(timespec="seconds")
    loop = warm.start("--cutover-at", at)
    try:
        output, _ = loop.communicate(timeout=600)
    finally:
        if loop.poll() is None:
            loop.kill()
    assert loop.returncode == 0, output
    assert "cutover --cutover-at reached" in warm.status()["steps"][3]["detail"]
    report = warm.status()
    assert report["cutover_at"] is not None and report["cutover_requested_at"] is None
    assert len([r for r in report["rounds"] if r["kind"] == "precopy"]) >= 2  # 12 s at a 5 s interval
    assert warm.same_as_source().returncode == 0
    assert snapshot_names(warm.sim, warm.vm) == []
