"""The cluster target of a warm migration against the fake API server, over real HTTP, real client.

What fakekube serves: the volumes and the VirtualMachine applied (Halted) before the first round,
and the volume's "filled by" record that keeps a re-run from sending a round's extents again; and
the rounds' way into the volume: a filler pod run by the test kubelet, the image or the delta
stream sent through `pods/exec` (the kubernetes client's websocket stream, fakekube's exec), the
filler's shell run in the pod's environment on the volume's local directory; and, after the final
delta, the guest conversion in a Job on the claims (the cold cluster target's), its pod run by a
second test kubelet.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from migrator import simulator
from migrator.convert import fill_delta
from migrator.cutover.targets.warm import ClusterWarmTarget
from migrator.simulator import seed
from testbed.demo import seed_guest_vm
from tests.cutover.test_cluster_target import CRDS
from tests.fakekube import FakeApiServer
from tests.runtime.kubelet import TestKubelet
from tests.specs.builders import plan_of, planned, source_vm
from tests.warm.cbt_env import enable_cbt, flat_vmdk, rename, snapshot_names

MiB = 1 << 20
MIGRATOR = Path(sys.executable).parent / "migrator"


def test_prepare_applies_volumes_and_a_halted_vm_and_publish_records_the_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the images live under convert's work dir
    p = planned()
    plan = plan_of(p)
    with FakeApiServer(crds=CRDS) as api:
        kubeconfig = str(api.kubeconfig(tmp_path / "kubeconfig"))
        target = ClusterWarmTarget(kubeconfig, "default")
        target.prepare(plan, p)
        target.prepare(plan, p)  # idempotent: server-side apply converges
        [vm] = api.objects("virtualmachines.kubevirt.io", "default")
        assert vm["spec"]["runStrategy"] == "Halted"
        claims = sorted(c["metadata"]["name"] for c in api.objects("persistentvolumeclaims", "default"))
        assert claims == sorted(d.claim_name for d in p.disks)

        disk = p.disks[0]
        image = target.image(plan, p, disk)
        with image.open("wb") as f:
            f.truncate(1 << 20)
        target.publish(plan, p, disk, [], full=False, key="vm:round-2:delta:x/2")  # nothing changed: no pod
        pvc = next(
            c for c in api.objects("persistentvolumeclaims", "default") if c["metadata"]["name"] == disk.claim_name
        )
        assert pvc["metadata"]["annotations"][fill_delta.FILLED_BY] == "vm:round-2:delta:x/2"
        creates = api.request_count("create", "pods")
        target.publish(plan, p, disk, [(0, 4096)], full=False, key="vm:round-2:delta:x/2")  # the same round again
        assert api.request_count("create", "pods") == creates  # recorded as filled: not sent twice


def test_rounds_reach_the_volume_through_the_filler_pods_exec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full round fills the volume whole, a delta round writes its extents and nothing else, both through exec."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    vm = source_vm()
    vm.disks = [replace(vm.disks[0], capacity_bytes=8 * MiB)]
    p = planned(vm)
    plan = plan_of(p)
    rng = random.Random(14)
    with FakeApiServer(crds=CRDS) as api:
        kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")
        volumes = tmp_path / "volumes"
        with TestKubelet(
            kubeconfig,
            "fill-node",
            host_root=tmp_path / "node",
            volumes_dir=volumes,
            label_selector="migrator.io/filler=true",
            interval=0.1,
        ) as kubelet:
            api.serve_exec(kubelet.node, kubelet.exec_target)
            target = ClusterWarmTarget(str(kubeconfig), "default")
            target.prepare(plan, p)
            disk = p.disks[0]
            image = target.image(plan, p, disk)
            with image.open("wb") as f:
                f.truncate(8 * MiB)
                for offset in (0, 3 * MiB, 7 * MiB):
                    f.seek(offset)
                    f.write(rng.randbytes(256 << 10))
            target.publish(plan, p, disk, [(0, 8 * MiB)], full=True, key="web-01:round-1:full:a/1")
            volume = volumes / disk.claim_name / "disk.img"
            assert volume.read_bytes() == image.read_bytes()

            changed = [(64 << 10, 4096), (5 * MiB, 128 << 10)]
            fd = os.open(image, os.O_WRONLY)
            for offset, length in changed:
                os.pwrite(fd, rng.randbytes(length), offset)
            os.close(fd)
            with volume.open("r+b") as f:  # outside the extents: a delta round must leave it as it is
                f.seek(6 * MiB)
                f.write(b"untouched")
            execs = api.request_count("create", "pods/exec")
            target.publish(plan, p, disk, changed, full=False, key="web-01:round-2:delta:a/2")
            assert api.request_count("create", "pods/exec") == execs + 1
            expected = bytearray(image.read_bytes())
            expected[6 * MiB : 6 * MiB + 9] = b"untouched"
            assert volume.read_bytes() == bytes(expected)
            assert not kubelet.errors


def test_a_warm_cutover_converts_in_a_job_and_a_disk_without_an_os_fails_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cutover --warm --now` to a cluster, a blank disk: the rounds fill the claim, then convert-guest runs the
    conversion Job on it, which fails with virt-v2v's own reason in one line. Nothing is started (the
    VirtualMachine stays Halted, as applied before the first round), the Job is gone, and the warm failure rules
    hold: every migrator snapshot removed, the source left off for a re-run, and a rollback powers it on."""
    monkeypatch.setenv("MIGRATOR_ACCEL", "tcg")  # what the conversion pod gets: this node's KVM fails the appliance
    raw = tmp_path / "blank.raw"
    with raw.open("wb") as f:
        f.truncate(16 * MiB)
    sim = simulator.start(vms_per_pool=1)
    try:
        vm = rename(sim, "DC0_H0_VM0", "warm-jobfail")
        seed_guest_vm(sim, vm, flat_vmdk(raw, tmp_path / "vmdk", "warmjobfail"), mac="00:50:56:3a:7c:11")
        enable_cbt(sim, vm)
        with FakeApiServer(crds=CRDS, jobs=True) as api:
            kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")
            volumes = tmp_path / "volumes"
            common = {"host_root": tmp_path / "node", "volumes_dir": volumes, "interval": 0.1}
            filler = TestKubelet(kubeconfig, "fill-node", label_selector="migrator.io/filler=true", **common)
            converter = TestKubelet(
                kubeconfig, "convert-node", label_selector="migrator.io/purpose=convert-guest", **common
            )
            with filler, converter:
                api.serve_exec(filler.node, filler.exec_target)
                env = {k: v for k, v in os.environ.items() if not k.startswith("MIGRATOR_")}
                env |= {
                    "MIGRATOR_VSPHERE_PASSWORD": sim.password,
                    "MIGRATOR_STATE_DIR": str(tmp_path / "state"),
                    "XDG_CACHE_HOME": str(tmp_path / "cache"),  # convert's work dir: the staged images
                }
                source = ["--source", sim.source_url(), "--insecure", "--vm", vm]
                where = ["--kubeconfig", str(kubeconfig), "--namespace", "default"]
                run = subprocess.run(
                    [str(MIGRATOR), "cutover", *source, "--warm", "--now", *where],
                    capture_output=True,
                    text=True,
                    env=env,
                    timeout=900,
                )
                assert run.returncode == 4, run.stdout + run.stderr
                [line] = [x for x in run.stderr.splitlines() if x.strip()]
                assert "inspection could not detect the source guest" in line, run.stderr
                assert "warm-jobfail-convert-guest" in line and "the source is off: re-run to resume" in line
                assert "convert-guest: Job default/warm-jobfail-convert-guest created" in run.stdout + run.stderr
                assert len(converter.pods) == 1  # refused: the podFailurePolicy failed the Job at once
                assert filler.pods  # the rounds went into the claim through the filler pod
                assert (volumes / "warm-jobfail-disk-0" / "disk.img").stat().st_size == 16 * MiB
                assert api.objects("jobs.batch", "default") == []
                [target] = api.objects("virtualmachines.kubevirt.io", "default")
                assert target["spec"]["runStrategy"] == "Halted"
                assert "os.template.kubevirt.io/debian12" not in (target["metadata"].get("labels") or {})
                assert api.objects("virtualmachineinstances.kubevirt.io", "default") == []
                assert snapshot_names(sim, vm) == []
                with seed.session(sim) as vsphere:
                    assert vsphere.power_state(vm) == "poweredOff"
                status = subprocess.run(
                    [str(MIGRATOR), "status", "--vm", vm, "-o", "json"], capture_output=True, text=True, env=env
                )
                assert status.returncode == 0, status.stderr
                report = json.loads(status.stdout)
                assert report["status"] == "failed", report
                assert [s["step"] for s in report["steps"] if s.get("status") == "failed"] == ["convert-guest"], report
                # refused in the claim, by the Job: no virt-v2v state, log or overlay beside the staged image here
                assert not list((tmp_path / "cache").rglob("guest*")), list((tmp_path / "cache").rglob("*"))
                # the VM's name alone: the source, the cluster (its kubeconfig) and the namespace as recorded
                elsewhere = tmp_path / "elsewhere"
                elsewhere.mkdir()
                rolled = subprocess.run(
                    [str(MIGRATOR), "cutover", "--rollback", "--vm", vm, "--insecure"],
                    capture_output=True,
                    text=True,
                    env={k: v for k, v in env.items() if k != "KUBECONFIG"} | {"HOME": str(elsewhere)},
                    cwd=elsewhere,
                    timeout=300,
                )
                assert rolled.returncode == 0, rolled.stdout + rolled.stderr
                with seed.session(sim) as vsphere:
                    assert vsphere.power_state(vm) == "poweredOn"
                assert snapshot_names(sim, vm) == []
    finally:
        sim.stop()
