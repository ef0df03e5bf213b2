"""The cluster target converts the guest in a Job: the fake API server's Job controller makes its pod, the test
kubelet runs the pod's command (``python3 -m converters.guest`` on the claims it mounts) as a local process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from converters.guest import GuestConversionError
from converters.guest.job import message, nic_arg
from converters.guest.model import Inspection
from converters.specs import SpecOptions, vm_manifests
from core.errors import TargetError
from core.inventory import Nic
from core.plan import NetworkTarget, Plan, PlannedVM
from core.wait import wait_until
from migrator.convert import cluster
from migrator.cutover.targets import DiskOrigin, conversion_job
from migrator.cutover.targets.cluster import ClusterTarget
from testbed.debian_guest import DebianGuest
from tests.cutover.test_cluster_target import CRDS
from tests.fakekube import FakeApiServer
from tests.runtime.kubelet import LocalPod, TestKubelet
from tests.specs.builders import plan_of, planned, source_vm

NODE = "guest-node"


def one_disk_vm(name: str, *, pci_slot: int | None = None) -> PlannedVM:
    vm = source_vm(name=name, memory_mib=1024)
    vm.disks = vm.disks[:1]
    vm.nics = vm.nics[:1]
    vm.nics[0].pci_slot = pci_slot
    vm.guest_id = "debian12_64Guest"
    return planned(vm, nic_targets=[(NetworkTarget.POD, None)])


@dataclass
class JobCluster:
    api: FakeApiServer
    target: ClusterTarget
    volumes: Path
    kubelet: TestKubelet

    def apply_vm(self, plan: Plan, p: PlannedVM) -> None:
        """What the transfer leaves: the VirtualMachine as copied (source buses), Halted."""
        cluster.server_side_apply(self.target.client, vm_manifests(p, plan, SpecOptions()).virtual_machine)


@pytest.fixture
def job_cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[JobCluster]:
    monkeypatch.delenv("MIGRATOR_SKIP_CONVERSION", raising=False)
    monkeypatch.setenv("MIGRATOR_ACCEL", "tcg")  # what this node's pods get: its KVM does not boot the appliance
    root = Path(tempfile.mkdtemp(prefix="gjob", dir="/tmp"))
    try:
        with FakeApiServer(crds=CRDS, jobs=True) as api:
            kubeconfig = api.kubeconfig(root / "kubeconfig")
            volumes = root / "volumes"
            selector = "migrator.io/purpose=convert-guest"
            kubelet = TestKubelet(kubeconfig, NODE, host_root=root, volumes_dir=volumes, label_selector=selector)
            with kubelet:
                target = ClusterTarget(str(kubeconfig), "default", DiskOrigin(), conversion_timeout=900)
                yield JobCluster(api, target, volumes, kubelet)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_conversion_job_mounts_the_claims_and_carries_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIGRATOR_VSPHERE_PASSWORD", "hunter2")
    p = one_disk_vm("gjob-spec", pci_slot=192)
    job = conversion_job.conversion_job(p, "ns", conversion_job.Placement(node="n1"), fresh=True)
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert "hunter2" not in json.dumps(job) and "env" not in container and "envFrom" not in container
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    assert container["volumeMounts"] == [{"name": "disk-0", "mountPath": "/var/run/migrator/volumes/gjob-spec-disk-0"}]
    assert pod["volumes"] == [{"name": "disk-0", "persistentVolumeClaim": {"claimName": "gjob-spec-disk-0"}}]
    args = container["args"]
    assert args[:4] == ["-m", "converters.guest", "--vm", "gjob-spec"] and "--fresh" in args
    assert args[args.index("--disk") + 1] == "/var/run/migrator/volumes/gjob-spec-disk-0/disk.img"
    assert nic_arg(args[args.index("--nic") + 1]).old_name == "ens192"
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]
    assert job["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [2, 3]
    # the inspection fits the termination message Kubernetes keeps
    big = Inspection(vm="x", warnings=[f"warning {i} " + "x" * 200 for i in range(100)])
    assert len(message(big).encode()) <= 4096 and Inspection.from_dict(json.loads(message(big))).vm == "x"


def test_a_disk_without_an_os_fails_the_job_with_virt_v2vs_reason(job_cluster: JobCluster) -> None:
    """No OS on the claim: the pod's termination message carries virt-v2v's reason, the Job fails at once (no
    retries), the user gets one line, the Job is deleted and the VirtualMachine stays Halted with its old buses."""
    p = one_disk_vm("gjob-blank")  # no PCI slot: no NIC name to pin, straight to virt-v2v
    plan = plan_of(p)
    plan.target_namespace = "default"
    claim = job_cluster.volumes / p.disks[0].claim_name
    claim.mkdir(parents=True)
    with (claim / "disk.img").open("wb") as image:
        image.truncate(100 << 20)
    job_cluster.apply_vm(plan, p)
    [before] = job_cluster.api.objects("virtualmachines.kubevirt.io", "default")
    # a Job of that name that is not this VM's conversion is left alone
    other = one_disk_vm("gjob-other")
    foreign = conversion_job.conversion_job(other, "default", conversion_job.Placement(), fresh=False)
    foreign["metadata"]["annotations"] = {conversion_job.SOURCE_ANNOTATION: "someone-else"}
    foreign["spec"]["template"]["metadata"]["labels"] = {"app": "not-for-the-test-kubelet"}
    foreign["spec"]["template"]["spec"]["containers"][0]["args"] = ["-c", "pass"]
    conversion_job.JobApi(job_cluster.target.client.client).create_job("default", foreign)
    with pytest.raises(TargetError, match="exists and is not this VM's conversion"):
        job_cluster.target.convert_guest(plan_of(other), other, skip=False)
    with pytest.raises(GuestConversionError) as failed:
        job_cluster.target.convert_guest(plan, p, skip=False)
    line = failed.value.message
    print(line)
    assert "\n" not in line and "inspection could not detect the source guest" in line, line
    assert "gjob-blank-convert-guest" in line
    jobs = [j["metadata"]["name"] for j in job_cluster.api.objects("jobs.batch", "default")]
    assert jobs == ["gjob-other-convert-guest"]  # ours cleaned up, its pods with it; the foreign one untouched
    assert len(job_cluster.kubelet.pods) == 1  # the podFailurePolicy failed the Job: not retried
    [vm] = job_cluster.api.objects("virtualmachines.kubevirt.io", "default")
    assert vm["spec"]["runStrategy"] == "Halted"
    assert vm == before  # not applied again (no inspection to apply), not started
    assert not list((claim / conversion_job.STATE_SUBDIR / "guest").glob("*.qcow2"))  # the image untouched


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("MIGRATOR_TEST_GUEST_JOB") != "1",
    reason="a second full conversion of the Debian guest (~2 min under TCG): MIGRATOR_TEST_GUEST_JOB=1 runs it",
)
def test_the_debian_guest_is_converted_in_a_job_that_survives_a_kill_9(
    job_cluster: JobCluster, debian_guest: DebianGuest
) -> None:
    """The VMware-shaped guest in a claim: the Job's first pod is killed -9 once virt-v2v runs; the Job's next
    pod starts over from the untouched image (its state is on the claim) and converts it; the VirtualMachine is
    applied again with virtio and the OS labels; the Job is gone."""
    vm = source_vm(name="gjob-debian", memory_mib=1024)
    vm.disks = vm.disks[:1]
    vm.nics = [Nic(label="Network adapter 1", model="vmxnet3", mac=debian_guest.mac, network="VM Network")]
    vm.nics[0].pci_slot = debian_guest.pci_slot
    vm.guest_id = "debian12_64Guest"
    p = planned(vm, nic_targets=[(NetworkTarget.POD, None)])
    plan = plan_of(p)
    plan.target_namespace = "default"
    claim = job_cluster.volumes / p.disks[0].claim_name
    claim.mkdir(parents=True)
    subprocess.run(["cp", "--sparse=always", str(debian_guest.raw), str(claim / "disk.img")], check=True)
    job_cluster.apply_vm(plan, p)
    result: dict[str, object] = {}

    def convert() -> None:
        try:
            result["detail"] = job_cluster.target.convert_guest(plan, p, skip=False)
        except Exception as error:  # the test thread reports it
            result["error"] = error

    worker = threading.Thread(target=convert)
    worker.start()
    stamp = (claim / "disk.img").stat().st_mtime_ns

    def virt_v2v_running() -> LocalPod | None:
        for pod in list(job_cluster.kubelet.pods.values()):
            log = pod.root / "container.log" if pod.root else None
            if log and log.exists() and "Opening the source" in log.read_text(errors="replace"):
                return pod
        return None

    first = wait_until(virt_v2v_running, timeout=600, interval=0.5)
    assert first is not None and first.process is not None
    first.process.kill()  # kill -9 in the middle of virt-v2v
    worker.join(1200)
    assert "error" not in result, result.get("error")
    assert len(job_cluster.kubelet.pods) == 2  # the Job made another pod (the kill matched no FailJob rule)
    assert (claim / "disk.img").stat().st_mtime_ns != stamp  # converted (committed) by the second pod only
    assert "Debian 12" in str(result["detail"]) and "ens192" in str(result["detail"])
    assert job_cluster.api.objects("jobs.batch", "default") == []
    [applied] = job_cluster.api.objects("virtualmachines.kubevirt.io", "default")
    assert applied["metadata"]["labels"]["os.template.kubevirt.io/debian12"] == "true"
    disks = applied["spec"]["template"]["spec"]["domain"]["devices"]["disks"]
    assert [d["disk"]["bus"] for d in disks if "disk" in d] == ["virtio"]
    assert not list((claim / conversion_job.STATE_SUBDIR / "guest").glob("*.qcow2"))
    state = json.loads((claim / conversion_job.STATE_SUBDIR / "guest-gjob-debian.json").read_text())
    assert state["phase"] == "done" and state["inspection"]["nic_pins"][0]["name"] == "ens192"


def test_from_a_migration_pod_the_job_goes_to_that_pods_node_and_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a Migration's pod (the downward API's POD_NAME/POD_NAMESPACE), the claims it filled are mounted on its
    node (ReadWriteOnce): the conversion Job is pinned there, from the pod's own image."""
    with FakeApiServer() as api:
        client = ClusterTarget(str(api.kubeconfig(tmp_path / "kubeconfig")), "default", DiskOrigin()).client.client
        jobs = conversion_job.JobApi(client)
        pod = {
            "metadata": {"name": "estate-web-1-abcde", "namespace": "default"},
            "spec": {"nodeName": "node-7", "containers": [{"name": "migrate", "image": "registry.example/migrator:1"}]},
        }
        jobs.core.create_namespaced_pod("default", pod, _preload_content=False)
        monkeypatch.delenv(conversion_job.IMAGE_ENV, raising=False)
        assert conversion_job.own_placement(jobs) == conversion_job.Placement(image=conversion_job.DEFAULT_IMAGE)
        monkeypatch.setenv("POD_NAME", "estate-web-1-abcde")
        monkeypatch.setenv("POD_NAMESPACE", "default")
        assert conversion_job.own_placement(jobs) == conversion_job.Placement("registry.example/migrator:1", "node-7")
        monkeypatch.setenv(conversion_job.IMAGE_ENV, "registry.example/migrator:2")
        assert conversion_job.own_placement(jobs).image == "registry.example/migrator:2"
