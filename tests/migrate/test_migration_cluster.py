"""The Migration resource and its controller on the fake API server, through the real clients.

The controller (``python -m runtime.migration``) runs as a process; the fake API server's Job
controller makes each Job's pod; the test kubelet runs it as a local process: the real
``migrator migrate --vm`` against the vSphere simulator, writing the disk into the VM's claim. The
runtime's controller, handler and the test kubelet then boot the VM from that claim (both pods'
claims map to the same directory), and its console marker proves the disk is the one copied.
"""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from migrator import simulator
from tests.fakekube import FakeApiServer
from tests.migrate.estate import MARKER, Estate, images_equal, seed_estate, target_name
from tests.runtime.cluster_env import CRDS, NODE, Cluster
from tests.runtime.kubelet import TestKubelet

PROJECT = Path(__file__).resolve().parents[2]
MIGRATION_CRD = PROJECT / "crds" / "migrations.migrator.io.yaml"
GROUP, VERSION, PLURAL = "migrator.io", "v1alpha1", "migrations"


def load_crd() -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load(MIGRATION_CRD.read_text())
    return crd


def test_migration_crd_is_generated_and_served(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("crds_generate", PROJECT / "crds" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.migration_crd() == load_crd(), "crds/migrations.migrator.io.yaml is stale: run crds/generate.py"
    with FakeApiServer(crds=[MIGRATION_CRD]) as api:
        client = kubernetes.config.new_client_from_config(str(api.kubeconfig(tmp_path / "kubeconfig")))
        custom = kubernetes.client.CustomObjectsApi(client)
        good = migration("m1", {"inline": {"kind": "Plan", "vms": []}}, maxInFlight=2, maxRate="200MiB/s")
        created = custom.create_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, good, field_validation="Strict"
        )
        assert created["spec"]["maxInFlight"] == 2 and created["spec"]["backoffLimit"] == 2  # defaulted
        for name, bad in [
            ("no-secret", {k: v for k, v in good["spec"].items() if k != "sourceSecretRef"}),
            ("zero", {**good["spec"], "maxInFlight": 0}),
            ("rate", {**good["spec"], "maxRate": "fast"}),
            ("two-plans", {**good["spec"], "plan": {"inline": {}, "configMapRef": {"name": "p"}}}),
        ]:
            body = {**good, "metadata": {"name": name}, "spec": bad}
            with pytest.raises(kubernetes.client.ApiException) as error:
                custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body)
            assert error.value.status == 422, name
        # credentials never in the resource: a password field is refused under strict validation
        leaky = {**good, "metadata": {"name": "leaky"}, "spec": {**good["spec"], "password": "hunter2"}}
        with pytest.raises(kubernetes.client.ApiException) as error:
            custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, leaky, field_validation="Strict")
        assert error.value.status == 400  # strict decoding: unknown field


def migration(name: str, plan: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Migration",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"plan": plan, "sourceSecretRef": {"name": "vsphere"}, "targetNamespace": "default", **spec},
    }


@contextmanager
def migration_cluster(logs: Path) -> Iterator[tuple[Cluster, TestKubelet]]:
    """The runtime (controller, handler, launcher kubelet), the Migration controller, and a kubelet for Jobs."""
    root = Path(tempfile.mkdtemp(prefix="h6m", dir="/tmp"))  # short: unix socket paths are limited
    logs.mkdir(parents=True, exist_ok=True)
    try:
        with FakeApiServer(crds=CRDS, jobs=True) as api:  # the runtime's CRDs, the Migration CRD among them
            kubeconfig = api.kubeconfig(root / "kubeconfig")
            env = Cluster(api, kubeconfig, root, logs)
            jobs = TestKubelet(
                kubeconfig,
                NODE,
                host_root=root,
                volumes_dir=env.volumes,
                label_selector="migrator.io/purpose",
                pod_kubeconfig=kubeconfig,
            )
            migration_controller = env.spawn("migration", ["runtime.migration", "--kubeconfig", str(kubeconfig)])
            try:
                jobs.__enter__()
                yield env, jobs
            finally:
                migration_controller.terminate()
                migration_controller.wait(15)
                jobs.__exit__(None, None, None)
                env.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _secret(env: Cluster, password: str) -> None:
    body = {
        "metadata": {"name": "vsphere"},
        "data": {"password": base64.b64encode(password.encode()).decode()},
    }
    env.core.create_namespaced_secret("default", body)


def _plan(estate: Estate, *vms: str) -> dict[str, Any]:
    args = [f"--vm={vm}" for vm in vms]
    estate.plan(*args)
    document: dict[str, Any] = yaml.safe_load(estate.plan_file.read_text())
    return document


def _phase(env: Cluster, name: str, phase: str) -> dict[str, Any] | None:
    status = _status(env, name)
    return status if status.get("phase") == phase else None


def _running(env: Cluster, name: str) -> dict[str, Any] | None:
    vmi = env.vmi(name)
    return vmi if vmi and (vmi.get("status") or {}).get("phase") == "Running" else None


def _status(env: Cluster, name: str) -> dict[str, Any]:
    obj = env.custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
    status: dict[str, Any] = obj.get("status") or {}
    return status


@pytest.fixture
def estate(fresh_vcsim: simulator.Simulator, tmp_path: Path, guest_vmdk: list[Path]) -> Estate:
    return seed_estate(fresh_vcsim, tmp_path, ["DC0_H0_VM0", "DC0_H0_VM1"], guest_vmdk)


@pytest.fixture(scope="module")
def guest_vmdk(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from testbed.guestimage import build_guest, to_vmdk

    return to_vmdk(build_guest(behaviour="wait", marker=MARKER), tmp_path_factory.mktemp("cluster-guest"))


def test_failing_jobs_are_retried_a_bounded_number_of_times_and_say_why(estate: Estate, tmp_path: Path) -> None:
    document = _plan(estate, estate.vms[0])
    with migration_cluster(tmp_path / "logs") as (env, _jobs):
        _secret(env, "not-the-password")
        body = migration("wrong-password", {"inline": document}, backoffLimit=1)
        env.custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body)
        status = env.wait("Migration Failed", lambda: _phase(env, "wrong-password", "Failed"))
        (vm,) = status["vms"]
        assert vm["name"] == estate.vms[0] and vm["phase"] == "Failed" and vm["attempts"] == 2
        assert vm["error"].startswith("2 attempt(s) failed; the last: ")
        assert "password" in vm["error"] or "log in" in vm["error"] or "login" in vm["error"], vm["error"]
        jobs = [j["metadata"]["name"] for j in env.api.objects("jobs.batch", "default")]
        assert sorted(jobs) == [f"wrong-password-{target_name(estate.vms[0])}-{n}" for n in (1, 2)]
        assert estate.power_state(estate.vms[0]) == "poweredOn"  # the source was never touched


def test_job_fills_the_claim_and_the_vm_boots_from_it(estate: Estate, tmp_path: Path, guest_vmdk: list[Path]) -> None:
    document = _plan(estate, *estate.vms)
    in_flight: list[int] = []
    with migration_cluster(tmp_path / "logs") as (env, _jobs):
        env.start_runtime()
        _secret(env, estate.sim.password)
        body = migration("estate", {"inline": document}, maxInFlight=1, maxRate="64MiB/s")
        env.custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body)

        def done() -> dict[str, Any] | None:
            jobs = env.api.objects("jobs.batch", "default")
            in_flight.append(sum(1 for j in jobs if (j.get("status") or {}).get("active")))
            status = _status(env, "estate")
            return status if status.get("phase") in ("Succeeded", "Failed") else None

        status = env.wait("Migration done", done, timeout=600)
        assert status["phase"] == "Succeeded", json.dumps(status, indent=1) + env.diagnostics()
        assert max(in_flight) == 1  # maxInFlight: one VM's Job at a time
        for vm_status in status["vms"]:
            assert vm_status["phase"] == "Succeeded" and vm_status["attempts"] == 1
            steps = {s["name"]: s for s in vm_status["steps"]}
            assert all(s["phase"] == "Completed" for s in steps.values()), steps
            progress = steps["transfer"]["progress"]
            assert progress["completed"] == progress["total"] > 0
        consoles = []
        for vm in estate.vms:
            name = target_name(vm)
            assert estate.power_state(vm) == "poweredOff"
            assert images_equal(guest_vmdk[0], env.volumes / f"{name}-disk-0" / "disk.img")  # the claim holds it
            vmi = env.wait(f"{name} Running", lambda n=name: _running(env, n))
            consoles.append(env.state_dir(vmi) / "console.log")

        def printed(console: Path) -> bool:
            return console.exists() and MARKER in console.read_text(errors="replace")

        # both guests boot at once under TCG on two shared cores: minutes when the machine is busy
        env.wait("the guests' console markers", lambda: all(printed(c) for c in consoles), 900)
        # the job's pod wrote the image into the claim, the launcher pod booted from that same claim
        pods = env.pods()
        launchers = [p for p in pods if (p["metadata"].get("labels") or {}).get("kubevirt.io") == "virt-launcher"]
        volumes = [v for p in launchers for v in p["spec"]["volumes"]]
        claims = {v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v}
        assert claims == {f"{target_name(vm)}-disk-0" for vm in estate.vms}
        for vm in estate.vms:
            env.patch_vm(target_name(vm), {"spec": {"runStrategy": "Halted"}})
        for name in [target_name(vm) for vm in estate.vms]:
            env.wait(f"{name} stopped", lambda n=name: env.vmi(n) is None, timeout=300)


def _transfer_running(env: Cluster, name: str, vm: str) -> bool:
    for vm_status in _status(env, name).get("vms") or []:
        if vm_status["name"] == vm:
            return any(s["name"] == "transfer" and s["phase"] == "Running" for s in vm_status.get("steps") or [])
    return False


def test_cancel_rolls_that_vm_back_and_the_other_goes_on(estate: Estate, tmp_path: Path) -> None:
    cancelled, other = estate.vms
    document = _plan(estate, *estate.vms)
    with migration_cluster(tmp_path / "logs") as (env, _jobs):
        env.start_runtime()
        _secret(env, estate.sim.password)
        body = migration("cancel", {"inline": document}, maxInFlight=2, maxRate="2MiB/s")
        env.custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body)
        env.wait(f"{cancelled} transferring", lambda: _transfer_running(env, "cancel", cancelled), timeout=300)
        env.custom.patch_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, "cancel", {"spec": {"cancel": [cancelled]}}
        )
        final = ("Succeeded", "Failed")
        status = env.wait("Migration done", lambda: (s := _status(env, "cancel")).get("phase") in final and s, 600)
        by_name = {s["name"]: s for s in status["vms"]}
        assert by_name[cancelled]["phase"] == "Canceled", json.dumps(status, indent=1) + env.diagnostics()
        assert "cancelled by request in step transfer: rolled back" in by_name[cancelled]["error"]
        assert by_name[other]["phase"] == "Succeeded"
        # the cancelled VM: its source back on, nothing of it left in the cluster
        assert estate.power_state(cancelled) == "poweredOn"
        assert env.vm(target_name(cancelled)) is None
        claims = [p["metadata"]["name"] for p in env.api.objects("persistentvolumeclaims", "default")]
        assert f"{target_name(cancelled)}-disk-0" not in claims and f"{target_name(other)}-disk-0" in claims
        assert estate.power_state(other) == "poweredOff"
        env.wait(f"{other} Running", lambda: _running(env, target_name(other)))
        env.patch_vm(target_name(other), {"spec": {"runStrategy": "Halted"}})
        env.wait(f"{other} stopped", lambda: env.vmi(target_name(other)) is None, timeout=300)
