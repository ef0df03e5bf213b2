"""Pure parts of the controller and handler: run strategies, printableStatus, backoff, the launcher pod."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runtime.controller import status as rules
from runtime.controller.pods import launcher_pod, memory_request
from runtime.handler.sync import pause_action, status_from_launcher
from tests.k8s_schema import validate_kubernetes

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def ts(delta: float = 0) -> str:
    return rules.format_time(NOW + timedelta(seconds=delta))


def vm(strategy: str | None = "Always", annotations: dict[str, str] | None = None, **status: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"template": {"spec": {}}}
    if strategy:
        spec["runStrategy"] = strategy
    return {
        "metadata": {"name": "a", "namespace": "default", "uid": "vm-uid", "annotations": annotations or {}},
        "spec": spec,
        "status": status,
    }


def vmi(phase: str = "Running", created: float = -60, **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "a", "uid": "vmi-uid", "creationTimestamp": ts(created), **meta},
        "status": {"phase": phase},
    }


@pytest.mark.parametrize(
    ("strategy", "instance", "action"),
    [
        ("Always", None, "create"),
        ("RerunOnFailure", None, "create"),
        ("Once", None, "create"),
        ("Halted", None, "none"),
        ("Manual", None, "none"),
        ("Halted", vmi(), "delete"),
        ("Always", vmi("Succeeded"), "delete"),
        ("Always", vmi("Failed"), "delete"),
        ("RerunOnFailure", vmi("Failed"), "delete"),
        ("RerunOnFailure", vmi("Succeeded"), "none"),
        ("Once", vmi("Failed"), "none"),
        ("Manual", vmi("Succeeded"), "none"),
        ("Always", vmi("Running"), "none"),
        ("Always", vmi("Running", deletionTimestamp=ts()), "wait"),
    ],
)
def test_run_strategies(strategy: str, instance: dict[str, Any] | None, action: str) -> None:
    assert rules.decide(vm(strategy), instance, NOW).action == action


def test_legacy_running_field() -> None:
    legacy = vm(None)
    legacy["spec"]["running"] = True
    assert rules.run_strategy(legacy) == "Always"
    assert rules.run_strategy(vm(None)) == "Halted"


def test_requests_are_level_triggered() -> None:
    restart = vm("Always", {"migrator.io/restart-requested": ts(-10)})
    assert rules.decide(restart, vmi(created=-60), NOW).action == "delete"
    assert rules.decide(restart, vmi(created=-5), NOW).action == "none"  # already restarted
    manual = vm("Manual", {"migrator.io/start-requested": ts(-10)})
    assert rules.decide(manual, None, NOW).action == "create"
    stopped = vm("Manual", {"migrator.io/start-requested": ts(-30), "migrator.io/stop-requested": ts(-10)})
    assert rules.decide(stopped, vmi(created=-20), NOW).action == "delete"
    assert rules.decide(stopped, None, NOW).action == "none"


def test_crash_loop_backoff_grows_and_waits() -> None:
    first = rules.decide(vm("Always"), vmi("Failed"), NOW)
    assert first.start_failure == {
        "consecutiveFailCount": 1,
        "lastFailedVMIUID": "vmi-uid",
        "retryAfterTimestamp": ts(10),
    }
    failing = vm(
        "Always", startFailure={"consecutiveFailCount": 3, "lastFailedVMIUID": "old", "retryAfterTimestamp": ts(-1)}
    )
    assert rules.decide(failing, vmi("Failed"), NOW).start_failure["retryAfterTimestamp"] == ts(80)  # 10 × 2³
    # The same failed instance is not counted twice.
    assert rules.decide(vm("Always", startFailure=first.start_failure), vmi("Failed"), NOW).start_failure is None
    waiting = vm("Always", startFailure={"consecutiveFailCount": 2, "retryAfterTimestamp": ts(15)})
    decision = rules.decide(waiting, None, NOW)
    assert decision.action == "wait" and decision.requeue_after == 15
    assert rules.printable_status(waiting, None, [], NOW) == "CrashLoopBackOff"
    assert rules.backoff_seconds(20, 10) == rules.BACKOFF_CAP


@pytest.mark.parametrize(
    ("the_vm", "instance", "missing", "printable"),
    [
        (vm("Halted"), None, [], "Stopped"),
        (vm("Always"), vmi("Scheduling"), [], "Starting"),
        (vm("Always"), vmi("Running"), [], "Running"),
        (vm("Halted"), vmi("Running"), [], "Stopping"),
        (vm("Always"), vmi("Running", deletionTimestamp=ts()), [], "Stopping"),
        ({**vm("Always"), "metadata": {"deletionTimestamp": ts()}}, vmi(), [], "Terminating"),
        (vm("Always"), None, ["disk"], "ErrorPvcNotFound"),
        (vm("RerunOnFailure"), vmi("Succeeded"), [], "Stopped"),
    ],
)
def test_printable_status(
    the_vm: dict[str, Any], instance: dict[str, Any] | None, missing: list[str], printable: str
) -> None:
    assert rules.printable_status(the_vm, instance, missing, NOW) == printable


def test_unschedulable_and_paused() -> None:
    pending = vmi("Scheduling")
    pending["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]
    assert rules.printable_status(vm(), pending, [], NOW) == "ErrorUnschedulable"
    paused = vmi("Running")
    paused["status"]["conditions"] = [{"type": "Ready", "status": "False"}, {"type": "Paused", "status": "True"}]
    status = rules.vm_status(vm(), paused, [], NOW)
    assert status["printableStatus"] == "Paused" and status["ready"] is False
    assert [c["type"] for c in status["conditions"]] == ["Ready", "Paused"]


def test_vm_status_is_stable_when_nothing_changes() -> None:
    ready = vmi("Running")
    ready["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    first = rules.vm_status(vm(), ready, [], NOW)
    again = rules.vm_status(vm(**first), ready, [], NOW + timedelta(minutes=1))
    assert first == again and first["ready"] is True


def pod(phase: str, node: str | None = None, code: int | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if code is not None:
        status["containerStatuses"] = [{"state": {"terminated": {"exitCode": code}}}]
    return {"metadata": {"name": "p"}, "spec": {"nodeName": node}, "status": status}


def test_instance_phase_from_pod() -> None:
    assert rules.vmi_status_from_pod(vmi(""), None) == {"phase": "Pending"}
    assert rules.vmi_status_from_pod(vmi("Pending"), pod("Pending")) == {}  # not bound yet, nothing said: Pending
    unschedulable = pod("Pending")
    unschedulable["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes"}
    ]
    assert rules.vmi_status_from_pod(vmi("Pending"), unschedulable) == {
        "phase": "Scheduling",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes"}],
    }
    assert rules.vmi_status_from_pod(vmi("Scheduling"), pod("Pending", "n1")) == {
        "phase": "Scheduled",
        "nodeName": "n1",
    }
    assert rules.vmi_status_from_pod(vmi("Running"), pod("Running", "n1")) == {}  # Running is the handler's
    assert rules.vmi_status_from_pod(vmi("Running"), pod("Failed", "n1", 2)) == {
        "phase": "Failed",
        "reason": "GuestCrashed",
    }
    assert rules.vmi_status_from_pod(vmi("Running"), pod("Succeeded", "n1", 0))["phase"] == "Succeeded"
    assert rules.vmi_status_from_pod(vmi("Running"), None) == {"phase": "Failed", "reason": "PodGone"}
    assert rules.vmi_status_from_pod(vmi("Failed"), None) == {}


def instance(**domain: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "prod", "uid": "0a1b2c3d-0000-0000-0000-000000000000"},
        "spec": {
            "domain": {"cpu": {"sockets": 1, "cores": 2, "threads": 1}, "memory": {"guest": "1Gi"}, **domain},
            "volumes": [
                {"name": "disk-0", "persistentVolumeClaim": {"claimName": "web-disk-0"}},
                {"name": "disk-1", "dataVolume": {"name": "web-dv"}},
                {"name": "cloudinit", "cloudInitNoCloud": {"userData": "x"}},
            ],
            "nodeSelector": {"zone": "a"},
        },
    }


def test_memory_request_is_guest_plus_overhead() -> None:
    # 1024 + 256 + 2 × 16 + 1024/64 = 1328 MiB
    assert memory_request(instance()["spec"]) == "1328Mi"
    efi = instance(firmware={"bootloader": {"efi": {}}})
    assert memory_request(efi["spec"]) == "1344Mi"


def test_launcher_pod() -> None:
    pod = launcher_pod(instance(), kvm=True)
    validate_kubernetes(pod)
    meta, spec = pod["metadata"], pod["spec"]
    assert meta["name"] == "virt-launcher-web-0a1b2"
    assert meta["labels"] == {
        "kubevirt.io": "virt-launcher",
        "kubevirt.io/created-by": "0a1b2c3d-0000-0000-0000-000000000000",
        "vm.kubevirt.io/name": "web",
        "kubevirt.io/domain": "web",
    }
    assert meta["ownerReferences"][0]["kind"] == "VirtualMachineInstance" and meta["ownerReferences"][0]["controller"]
    container = spec["containers"][0]
    assert container["command"][:3] == ["python3", "-m", "runtime.launcher"]
    assert container["resources"]["limits"] == {"devices.kubevirt.io/kvm": "1"}
    assert container["env"][0]["name"] == "MIGRATOR_VMI_JSON"
    assert container["env"][1] == {"name": "MIGRATOR_ACCEL_CACHE_DIR", "value": "/var/run/migrator/sockets/.accel"}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["disk-0"] == "/var/run/kubevirt-private/vmi-disks/disk-0"
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v
    }
    assert claims == {"disk-0": "web-disk-0", "disk-1": "web-dv"}
    assert spec["nodeSelector"] == {"zone": "a"} and spec["restartPolicy"] == "Never"
    no_kvm = launcher_pod(instance(), kvm=False)["spec"]["containers"][0]
    assert "limits" not in no_kvm["resources"] and no_kvm["command"][-2:] == ["--accel", "tcg"]


def test_handler_status_from_launcher() -> None:
    running = {
        "phase": "Running",
        "interfaces": [{"name": "default", "mac": "00:50:56:00:00:01"}],
        "accelerator": {"kind": "tcg", "reason": "KVM is present but fails a boot loader's real-mode code"},
    }
    changes = status_from_launcher(vmi("Scheduled"), running, None, lost=False)
    assert changes["phase"] == "Running"
    assert changes["interfaces"][0]["mac"] == "00:50:56:00:00:01"
    assert changes["conditions"] == [
        {"type": "Ready", "status": "True", "reason": "", "message": ""},
        {  # the probe's answer, and why, in the instance's status
            "type": "HardwareAccelerated",
            "status": "False",
            "reason": "TCG",
            "message": "KVM is present but fails a boot loader's real-mode code",
        },
    ]
    paused = status_from_launcher(vmi("Running"), {**running, "phase": "Paused"}, None, lost=False)
    assert [(c["type"], c["status"]) for c in paused["conditions"]] == [
        ("Ready", "False"),
        ("Paused", "True"),
        ("HardwareAccelerated", "False"),
    ]
    assert status_from_launcher(vmi("Running"), None, None, lost=True)["phase"] == "Failed"
    assert (
        status_from_launcher(vmi("Running"), None, {"phase": "Succeeded", "reason": "guest shut down"}, lost=True)[
            "phase"
        ]
        == "Succeeded"
    )
    assert status_from_launcher(vmi("Scheduled"), None, None, lost=False) == {}
    assert status_from_launcher(vmi("Failed"), running, None, lost=False) == {}
    wants_pause = vmi("Running", annotations={"migrator.io/paused": "true"})
    assert pause_action(wants_pause, running) == "/pause"
    assert pause_action(vmi("Running"), {"phase": "Paused"}) == "/unpause"
    assert pause_action(vmi("Running"), running) is None


def test_recheck_after_is_when_time_alone_changes_the_decision() -> None:
    """What the VM's kopf daemon sleeps for: a backoff's end, or a run long enough to forget start failures."""
    assert rules.recheck_after(vm("Always"), None, NOW) is None  # nothing on record: no daemon
    waiting = vm("Always", startFailure={"consecutiveFailCount": 2, "retryAfterTimestamp": ts(20)})
    assert rules.recheck_after(waiting, None, NOW) == pytest.approx(20, abs=1)
    assert rules.recheck_after(waiting, vmi("Running", created=-60), NOW) == pytest.approx(240, abs=1)
    assert rules.recheck_after(waiting, vmi("Scheduled", created=-60), NOW) is None


def test_the_vm_view_of_an_instance_ignores_what_the_vm_does_not_read() -> None:
    pending, scheduled = vmi("Pending"), vmi("Scheduled")
    scheduled["status"]["nodeName"] = "n1"
    assert rules.vm_view(pending) == rules.vm_view(scheduled)  # both "starting": no VM reconcile
    assert rules.vm_view(vmi("Running")) != rules.vm_view(scheduled)
    paused = vmi("Running")
    paused["status"]["conditions"] = [{"type": "Paused", "status": "True"}]
    assert rules.vm_view(paused) != rules.vm_view(vmi("Running"))
    assert rules.vm_view(None) == ()
