"""The in-cluster runtime end to end: real controller and handler processes, the test kubelet running the
real launcher with the real tiny guest, all through the real clients against the fake API server.

Each boot is TCG on shared cores (~5-10 s); the module keeps them few.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from tests.runtime.cluster_env import cluster
from tests.runtime.guest_layout import VMWARE_MAC, converted_from_vmware, leftovers, vm_manifest, wait_for_text

pytest.importorskip("libvirt")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def libvirtd() -> None:
    from runtime.launcher.libvirtd import ensure_libvirtd

    ensure_libvirtd()


def guest(tmp_path: Path, behaviour: str) -> Path:
    from testbed.guestimage import build_guest

    return build_guest(tmp_path / "guest", firmware="bios", behaviour=behaviour).raw


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:5]}"


def status(obj: dict | None) -> dict:
    return (obj or {}).get("status") or {}


def test_vm_runs_pauses_stops_and_is_deleted(tmp_path: Path) -> None:
    name = unique("web")
    with cluster(tmp_path) as env:
        env.start_runtime()
        env.add_disk(f"{name}-disk0", guest(tmp_path, "wait"))
        manifest = vm_manifest(name, f"{name}-disk0", grace=20)
        env.custom.create_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachines", manifest)

        vm = env.wait("VM Running", lambda: (v := env.vm(name)) and status(v).get("printableStatus") == "Running" and v)
        assert status(vm)["ready"] is True
        vmi = env.vmi(name)
        assert status(vmi)["phase"] == "Running" and status(vmi)["nodeName"] == "node-1"
        assert [i["mac"] for i in status(vmi)["interfaces"]] == ["00:50:56:9a:0b:01"]
        assert vmi["metadata"]["labels"]["kubevirt.io/nodeName"] == "node-1"
        (accel,) = [c for c in status(vmi)["conditions"] if c["type"] == "HardwareAccelerated"]
        assert accel["reason"] in ("KVM", "TCG") and accel["message"]  # the probe's answer, with its reason
        (pod,) = env.pods()
        assert pod["metadata"]["labels"]["kubevirt.io/created-by"] == vmi["metadata"]["uid"]
        assert pod["metadata"]["ownerReferences"][0]["uid"] == vmi["metadata"]["uid"]
        wait_for_text(env.state_dir(vmi) / "console.log", "MIGRATOR-GUEST-READY")

        # Pause and unpause through the instance's annotation, carried out by the handler.
        def set_paused(value: str) -> None:
            body = {"metadata": {"annotations": {"migrator.io/paused": value}}}
            kind = "virtualmachineinstances"
            env.custom.patch_namespaced_custom_object("kubevirt.io", "v1", "default", kind, name, body)

        set_paused("true")
        env.wait("VM Paused", lambda: status(env.vm(name)).get("printableStatus") == "Paused")
        set_paused("false")
        env.wait("VM Running again", lambda: status(env.vm(name)).get("printableStatus") == "Running")

        # Stop: runStrategy Halted → the guest shuts down, instance and pod go, the domain is gone.
        env.patch_vm(name, {"spec": {"runStrategy": "Halted"}})
        # A clean guest shutdown (ACPI), not a kill; the handler removes the state dir once the instance is gone.
        wait_for_text(env.state_dir(vmi) / "console.log", "MIGRATOR-GUEST-SHUTDOWN")
        env.wait(
            "VM Stopped",
            lambda: (
                env.vmi(name) is None and not env.pods() and status(env.vm(name)).get("printableStatus") == "Stopped"
            ),
            timeout=90,
        )
        assert status(env.vm(name))["ready"] is False
        env.wait("domain gone", lambda: not leftovers(name), timeout=30)

        # Delete: everything goes.
        env.custom.delete_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachines", name)
        env.wait("VM gone", lambda: env.vm(name) is None and env.vmi(name) is None and not env.pods(), timeout=60)


def test_a_vm_written_by_migrator_convert_runs_in_the_cluster(tmp_path: Path) -> None:
    """The converter's own output, unchanged: applied Halted, started and stopped with the CLI."""
    name = unique("conv")
    out = converted_from_vmware(tmp_path, name, "wait")
    (vm_file,) = out.glob("*-vm.yaml")
    manifest = yaml.safe_load(vm_file.read_text())
    assert manifest["spec"]["runStrategy"] == "Halted"
    (volume,) = manifest["spec"]["template"]["spec"]["volumes"]
    claim = volume["persistentVolumeClaim"]["claimName"]
    migrator = str(Path(sys.executable).parent / "migrator")
    with cluster(tmp_path) as env:
        env.start_runtime()
        env.add_disk(claim, out / f"{claim}.img")
        env.custom.create_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachines", manifest)
        env.wait("VM Stopped", lambda: status(env.vm(name)).get("printableStatus") == "Stopped")
        assert env.vmi(name) is None and not env.pods()

        kubeconfig = ["--kubeconfig", str(env.kubeconfig)]
        subprocess.run([migrator, "runtime", "vm", "start", name, *kubeconfig], check=True, capture_output=True)
        env.wait("VM Running", lambda: status(env.vm(name)).get("printableStatus") == "Running")
        vmi = env.vmi(name)
        assert [i["mac"] for i in status(vmi)["interfaces"]] == [VMWARE_MAC]
        console = wait_for_text(env.state_dir(vmi) / "console.log", "END-OF-DEVICES")
        assert "DISK vda " in console and f"NIC eth0 {VMWARE_MAC}" in console

        subprocess.run([migrator, "runtime", "vm", "stop", name, *kubeconfig], check=True, capture_output=True)
        env.wait("stopped", lambda: env.vmi(name) is None and not env.pods(), timeout=90)
        assert status(env.vm(name)).get("printableStatus") == "Stopped"
        env.wait("domain gone", lambda: not leftovers(name), timeout=30)


def test_crashing_guest_with_rerun_on_failure_is_restarted(tmp_path: Path) -> None:
    name = unique("crash")
    with cluster(tmp_path) as env:
        env.start_runtime()
        env.add_disk(f"{name}-disk0", guest(tmp_path, "crash"))
        manifest = vm_manifest(name, f"{name}-disk0", grace=10)
        manifest["spec"]["runStrategy"] = "RerunOnFailure"
        env.custom.create_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachines", manifest)

        first = env.wait("first instance", lambda: env.vmi(name))
        first_uid = first["metadata"]["uid"]
        vm = env.wait(
            "a start failure recorded",
            lambda: (
                (v := env.vm(name)) and (status(v).get("startFailure") or {}).get("lastFailedVMIUID") == first_uid and v
            ),
            timeout=150,
        )
        assert status(vm)["startFailure"]["consecutiveFailCount"] >= 1
        second = env.wait(
            "a new instance",
            lambda: (v := env.vmi(name)) and v["metadata"]["uid"] != first_uid and v,
            timeout=60,
        )
        env.wait("the new instance boots", lambda: (env.state_dir(second) / "console.log").exists(), timeout=90)
        wait_for_text(env.state_dir(second) / "console.log", "MIGRATOR-GUEST-READY")
        env.patch_vm(name, {"spec": {"runStrategy": "Halted"}})
        env.wait("stopped", lambda: env.vmi(name) is None and not env.pods(), timeout=90)
        env.wait("domain gone", lambda: not leftovers(name), timeout=30)


def test_controller_killed_mid_way_converges(tmp_path: Path) -> None:
    name = unique("kill")
    with cluster(tmp_path) as env:
        env.start_runtime()
        env.add_disk(f"{name}-disk0", guest(tmp_path, "wait"))
        manifest = vm_manifest(name, f"{name}-disk0", grace=20)
        env.custom.create_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachines", manifest)
        env.wait("instance created", lambda: env.vmi(name))
        env.kill_controller()  # SIGKILL between the instance and its pod, or just after
        env.start_controller()
        env.wait("VM Running", lambda: status(env.vm(name)).get("printableStatus") == "Running")
        assert len(env.pods()) == 1

        env.patch_vm(name, {"spec": {"runStrategy": "Halted"}})
        env.wait("stopping", lambda: (v := env.vmi(name)) is None or v["metadata"].get("deletionTimestamp"))
        env.kill_controller()  # SIGKILL while the instance terminates
        env.start_controller()
        env.wait(
            "VM Stopped",
            lambda: (
                env.vmi(name) is None and not env.pods() and status(env.vm(name)).get("printableStatus") == "Stopped"
            ),
            timeout=90,
        )
        env.custom.delete_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachines", name)
        env.wait("VM gone", lambda: env.vm(name) is None, timeout=30)
        env.wait("domain gone", lambda: not leftovers(name), timeout=30)


def test_missing_pvc_then_created(tmp_path: Path) -> None:
    name = unique("nopvc")
    with cluster(tmp_path) as env:
        env.start_controller()
        manifest = vm_manifest(name, f"{name}-disk0")
        env.custom.create_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachines", manifest)
        vm = env.wait(
            "ErrorPvcNotFound",
            lambda: (v := env.vm(name)) and status(v).get("printableStatus") == "ErrorPvcNotFound" and v,
        )
        assert env.vmi(name) is None
        ready = [c for c in status(vm)["conditions"] if c["type"] == "Ready"][0]
        assert ready["status"] == "False" and ready["reason"] == "PvcNotFound"
        env.add_pvc(f"{name}-disk0")
        env.wait("Starting", lambda: status(env.vm(name)).get("printableStatus") == "Starting", timeout=30)
        (pod,) = env.wait("a launcher pod", env.pods)
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert volumes["disk0"]["persistentVolumeClaim"]["claimName"] == f"{name}-disk0"
        assert status(env.vmi(name)).get("phase", "Pending") == "Pending"  # no kubelet here: its pod is never bound


def test_launcher_killed_marks_instance_failed_and_always_restarts(tmp_path: Path) -> None:
    name = unique("gone")
    with cluster(tmp_path) as env:
        env.start_controller()
        env.start_handler()
        kubelet = env.start_kubelet()
        env.add_disk(f"{name}-disk0", guest(tmp_path, "wait"))
        env.custom.create_namespaced_custom_object(
            "kubevirt.io", "v1", "default", "virtualmachines", vm_manifest(name, f"{name}-disk0", grace=10)
        )
        env.wait("VM Running", lambda: status(env.vm(name)).get("printableStatus") == "Running")
        first = env.vmi(name)
        (pod,) = env.pods()
        process = kubelet.process_of("default", pod["metadata"]["name"])
        assert process is not None
        process.kill()  # the launcher dies without a word (no result.json)
        vm = env.wait(
            "the failure recorded",
            lambda: (v := env.vm(name)) and (status(v).get("startFailure") or {}).get("lastFailedVMIUID") and v,
        )
        assert status(vm)["startFailure"]["lastFailedVMIUID"] == first["metadata"]["uid"]
        env.wait(
            "a new instance Running",
            lambda: (
                (v := env.vmi(name))
                and v["metadata"]["uid"] != first["metadata"]["uid"]
                and status(v).get("phase") == "Running"
            ),
        )
        env.wait("domain of the first gone, one left", lambda: len(leftovers(name)) <= 2, timeout=30)
        # Running means the domain exists: a power button pressed before the guest listens is lost and the stop
        # waits out the grace period. The guest listens before it prints its marker.
        wait_for_text(env.state_dir(env.vmi(name)) / "console.log", "MIGRATOR-GUEST-READY")
        env.patch_vm(name, {"spec": {"runStrategy": "Halted"}})
        env.wait("stopped", lambda: env.vmi(name) is None and not env.pods(), timeout=90)
        env.wait("domain gone", lambda: not leftovers(name), timeout=30)
