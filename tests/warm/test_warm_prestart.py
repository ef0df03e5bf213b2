"""The local target launched paused (a warm cutover's prestart): nothing of the guest runs until `start`.

A real launcher, libvirt and QEMU (TCG), on an empty disk: the guest is never meant to boot here, only
to be created paused, resumed, or destroyed while paused.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from converters.specs import SpecOptions, vm_manifests
from core.wait import wait_until
from migrator.convert import disks as disk_jobs
from migrator.convert import output
from migrator.cutover.targets import DiskOrigin
from migrator.cutover.targets.local import LocalTarget
from runtime import local
from tests.specs.builders import plan_of, planned, source_vm

MiB = 1 << 20


def _phase(name: str) -> str | None:
    return local.status(name).get("phase")


@pytest.fixture
def target_vm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MIGRATOR_RUNTIME_DIR", str(tmp_path / "runtime"))
    vm = source_vm(name="warm-prestart", bios_uuid=str(uuid.uuid4()), instance_uuid=str(uuid.uuid4()), memory_mib=128)
    vm.disks, vm.nics, vm.cdroms = [replace(vm.disks[0], capacity_bytes=16 * MiB)], vm.nics[:1], []
    p = planned(vm)
    plan = plan_of(p)
    out = tmp_path / "out"
    output.write_manifests(out, vm_manifests(p, plan, SpecOptions()))
    with disk_jobs.image_path(out, p.disks[0].claim_name, "raw").open("wb") as f:
        f.truncate(16 * MiB)
    target = LocalTarget(out, DiskOrigin(), accel="tcg")
    try:
        yield target, plan, p
    finally:
        target.stop(p, grace=1)


def test_started_paused_then_resumed(target_vm) -> None:  # type: ignore[no-untyped-def]
    target, plan, p = target_vm
    name = p.target_name
    target.start_paused(plan, p)
    vm_file = target.vm_file(p)
    assert yaml.safe_load(vm_file.read_text())["spec"]["template"]["spec"]["startStrategy"] == "Paused"
    assert wait_until(lambda: _phase(name) == "Paused", timeout=120, interval=0.1)
    assert not target.console_log(p).exists() or target.console_log(p).read_bytes() == b""  # no firmware ran
    target.start(plan, p, run=True)
    assert _phase(name) == "Running"
    spec = yaml.safe_load(vm_file.read_text())["spec"]
    assert spec["runStrategy"] == "Always" and "startStrategy" not in spec["template"]["spec"]


def test_a_paused_target_is_destroyed_not_resumed_by_a_stop(target_vm) -> None:  # type: ignore[no-untyped-def]
    target, plan, p = target_vm
    target.start_paused(plan, p)
    assert wait_until(lambda: _phase(p.target_name) == "Paused", timeout=120, interval=0.1)
    began = time.monotonic()
    stopped = target.stop(p, grace=300)  # an ACPI shutdown would resume the guest, then wait out the grace
    assert stopped.confirmed and "destroyed (it was paused)" in stopped.detail, stopped
    assert time.monotonic() - began < 60
