"""The cluster target (``cutover --kubeconfig F --namespace NS``): the same pipeline, KubeVirt's final steps.

Transfer is ``migrator convert --apply`` (images under convert's work dir, volumes filled in the
cluster, the VirtualMachine applied ``Halted``); start patches ``spec.runStrategy``; the instance's
phase is the VirtualMachineInstance's ``status.phase``; the TCP check dials the VMI's first IP.
The serial console needs a websocket client (``virtctl console``): the marker check is local-only.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from core.errors import TargetError
from core.plan import Plan, PlannedVM
from migrator.convert import ConvertRequest, convert
from migrator.convert import cluster as apply
from migrator.convert import disks as disk_jobs
from migrator.convert.run import _work_dir
from migrator.cutover.ports import Verification
from migrator.cutover.targets import DiskOrigin, allocated_bytes, forget_earlier_copies

KUBEVIRT = "kubevirt.io/v1"
POLL = 2.0


class ClusterTarget:
    def __init__(self, kubeconfig: str | None, namespace: str | None, origin: DiskOrigin) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.origin = origin
        self.description = f"cluster:{namespace or 'default'}"
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = apply.dynamic_client(self.kubeconfig)
        return self._client

    def _ns(self, plan: Plan | None = None) -> str:
        return self.namespace or (plan.target_namespace if plan else None) or "default"

    def _get(self, kind: str, name: str, namespace: str, api_version: str = KUBEVIRT) -> dict[str, Any] | None:
        from kubernetes.dynamic.exceptions import NotFoundError

        resource = apply._resource(self.client, {"apiVersion": api_version, "kind": kind})
        try:
            obj: dict[str, Any] = resource.get(name=name, namespace=namespace).to_dict()
        except NotFoundError:
            return None
        except Exception as error:
            raise TargetError(f"reading {kind} {namespace}/{name}: {apply._reason(error)}") from None
        return obj

    def _patch_run_strategy(self, planned: PlannedVM, strategy: str) -> None:
        resource = apply._resource(self.client, {"apiVersion": KUBEVIRT, "kind": "VirtualMachine"})
        try:
            resource.patch(
                name=planned.target_name,
                namespace=self._ns(),
                body={"spec": {"runStrategy": strategy}},
                content_type="application/merge-patch+json",
            )
        except Exception as error:
            raise TargetError(
                f"setting runStrategy {strategy} on {planned.target_name}: {apply._reason(error)}"
            ) from None

    # -- CutoverTarget ----------------------------------------------------------------------
    def check_verification(self, verification: Verification) -> None:
        if verification.marker:
            raise TargetError(
                "--verify-marker reads the serial console, which a cluster serves only to virtctl's websocket "
                "client: use --verify-port with a cluster target"
            )

    def preflight(self, plan: Plan, planned: PlannedVM) -> None:
        namespace = self._ns(plan)
        if self._get("Namespace", namespace, "", api_version="v1") is None:
            raise TargetError(f"namespace {namespace} does not exist")
        existing = self._get("VirtualMachine", planned.target_name, namespace)
        if existing is not None:
            annotations = (existing.get("metadata") or {}).get("annotations") or {}
            if annotations.get("migrator.io/source-name") != planned.source_name:
                raise TargetError(f"VirtualMachine {namespace}/{planned.target_name} exists and is not this VM's")
            if self._get("VirtualMachineInstance", planned.target_name, namespace) is not None:
                raise TargetError(
                    f"VirtualMachine {namespace}/{planned.target_name} is running: the final transfer would "
                    "rewrite its disks under it; stop it first"
                )

    def forget_earlier_copies(self, plan: Plan, planned: PlannedVM) -> list[str]:
        discarded = forget_earlier_copies(planned, _work_dir(plan, planned))
        namespace = self._ns(plan)
        for disk in planned.disks:
            for kind, api_version in (("PersistentVolumeClaim", "v1"), ("DataVolume", "cdi.kubevirt.io/v1beta1")):
                try:
                    live = self._get(kind, disk.volume_name, namespace, api_version=api_version)
                except TargetError:
                    continue  # CDI not installed: no DataVolumes
                if live and apply.FILLED_ANNOTATION in ((live.get("metadata") or {}).get("annotations") or {}):
                    # the filler's field manager owns the mark: applying without it removes it, so it refills
                    body = {
                        "apiVersion": api_version,
                        "kind": kind,
                        "metadata": {"name": disk.volume_name, "namespace": namespace},
                    }
                    self.client.server_side_apply(
                        apply._resource(self.client, body),
                        body=body,
                        name=disk.volume_name,
                        namespace=namespace,
                        field_manager=f"{apply.FIELD_MANAGER}-filler",
                        force_conflicts=True,
                    )
                    discarded.append(f"{kind} {disk.volume_name}")
        return discarded

    def transfer(self, plan: Plan, planned: PlannedVM) -> int:
        request = ConvertRequest(
            vm=planned.source_name,
            plan_path=self.origin.plan_path,
            source=self.origin.source,
            source_options=self.origin.source_options,
            apply=True,
            kubeconfig=self.kubeconfig,
            namespace=self._ns(plan),
            force=self.origin.force,
            progress="none",
            verify=True,  # the data matters most here: re-read every image from storage
        )
        result = convert(request)
        images = [t.target for t in disk_jobs.planned_transfers(planned, _work_dir(plan, planned), "raw")]
        return allocated_bytes(images) if result.converted else 0

    def start(self, plan: Plan, planned: PlannedVM, *, run: bool) -> None:
        self._patch_run_strategy(planned, "Always" if run else "Halted")  # the controller starts it once

    def wait_running(self, planned: PlannedVM, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            vmi = self._get("VirtualMachineInstance", planned.target_name, self._ns()) or {}
            phase = (vmi.get("status") or {}).get("phase")
            if phase == "Running":
                return
            if phase in ("Failed", "Succeeded"):
                raise TargetError(f"VirtualMachineInstance {planned.target_name} is {phase}")
            if time.monotonic() >= deadline:
                raise TargetError(f"{planned.target_name} was not Running within {timeout:.0f}s (phase {phase})")
            time.sleep(POLL)

    def verify(self, planned: PlannedVM, verification: Verification) -> None:
        if verification.tcp_port is None:
            return
        deadline = time.monotonic() + verification.timeout
        while True:
            vmi = self._get("VirtualMachineInstance", planned.target_name, self._ns()) or {}
            interfaces = (vmi.get("status") or {}).get("interfaces") or []
            address = next((i.get("ipAddress") for i in interfaces if i.get("ipAddress")), None)
            if address:
                try:
                    with socket.create_connection((address, verification.tcp_port), timeout=5):
                        return
                except OSError:
                    pass
            if time.monotonic() >= deadline:
                raise TargetError(
                    f"{planned.target_name} did not accept connections on port {verification.tcp_port} "
                    f"({address or 'no IP address yet'}) within {verification.timeout:.0f}s"
                )
            time.sleep(POLL)

    def stop(self, planned: PlannedVM) -> str:
        if self._get("VirtualMachine", planned.target_name, self._ns()) is None:
            return f"target {planned.target_name} does not exist"
        self._patch_run_strategy(planned, "Halted")
        deadline = time.monotonic() + 300
        while self._get("VirtualMachineInstance", planned.target_name, self._ns()) is not None:
            if time.monotonic() >= deadline:
                return f"target {planned.target_name} set Halted, its instance is still shutting down"
            time.sleep(POLL)
        return f"target {planned.target_name} stopped (runStrategy Halted)"
