"""The cluster target of a warm migration against the fake API server, over real HTTP, real client.

What fakekube serves: the volumes and the VirtualMachine applied (Halted) before the first round,
and the volume's "filled by" record that keeps a re-run from sending a round's extents again.
The exec stream into a filler pod needs a real cluster (fakekube serves no `exec`); its shell is
tested in test_delta.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from migrator.convert import fill_delta
from migrator.cutover.targets.warm import ClusterWarmTarget
from tests.cutover.test_cluster_target import CRDS
from tests.fakekube import FakeApiServer
from tests.specs.builders import plan_of, planned


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
