"""The cluster target of a warm migration against the fake API server, over real HTTP, real client.

What fakekube serves: the volumes and the VirtualMachine applied (Halted) before the first round,
and the volume's "filled by" record that keeps a re-run from sending a round's extents again; and
the rounds' way into the volume: a filler pod run by the test kubelet, the image or the delta
stream sent through `pods/exec` (the kubernetes client's websocket stream, fakekube's exec), the
filler's shell run in the pod's environment on the volume's local directory.
"""

from __future__ import annotations

import os
import random
from dataclasses import replace
from pathlib import Path

import pytest

from migrator.convert import fill_delta
from migrator.cutover.targets.warm import ClusterWarmTarget
from tests.cutover.test_cluster_target import CRDS
from tests.fakekube import FakeApiServer
from tests.runtime.kubelet import TestKubelet
from tests.specs.builders import plan_of, planned, source_vm

MiB = 1 << 20


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
