"""The cluster target (``cutover --kubeconfig F --namespace NS``): the same pipeline, KubeVirt's final steps.

Transfer is ``migrator convert --apply`` (images under convert's work dir, volumes filled in the
cluster, the VirtualMachine applied ``Halted``); convert-guest runs virt-v2v in a Job that mounts the
claims (``conversion_job``) and applies the VirtualMachine again with virtio; start patches
``spec.runStrategy``; the instance's phase is the VirtualMachineInstance's ``status.phase``; the TCP
check dials the VMI's first IP.
The serial console needs a websocket client (``virtctl console``): the marker check is local-only.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

from core.errors import TargetError
from core.plan import Plan, PlannedVM
from core.wait import wait_until
from migrator.convert import cluster as apply
from migrator.convert import convert
from migrator.convert import disks as disk_jobs
from migrator.convert.run import apply_work_dir
from migrator.cutover.ports import TargetStop, Verification
from migrator.cutover.targets import DiskOrigin, allocated_bytes, conversion_job, forget_earlier_copies

KUBEVIRT = "kubevirt.io/v1"
POLL = 2.0
DESTROY_WAIT = 30.0  # seconds for a force-deleted instance to go

log = logging.getLogger(__name__)


class ClusterTarget:
    def __init__(
        self,
        kubeconfig: str | None,
        namespace: str | None,
        origin: DiskOrigin,
        *,
        context: str | None = None,
        skip_conversion: bool | None = None,
        announce: Callable[[str], None] = log.info,
        conversion_timeout: float = conversion_job.TIMEOUT,
    ) -> None:
        self.skip_conversion = skip_conversion
        self.announce = announce
        self.conversion_timeout = conversion_timeout
        self._copied_again = False
        self.kubeconfig = kubeconfig
        self.context = context
        self.namespace = namespace
        self.origin = origin
        self.description = f"cluster:{namespace or 'default'}"
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = apply.dynamic_client(self.kubeconfig, self.context)
        return self._client

    def _ns(self, plan: Plan | None = None) -> str:
        return self.namespace or (plan.target_namespace if plan else None) or "default"

    def _get(self, kind: str, name: str, namespace: str, api_version: str = KUBEVIRT) -> dict[str, Any] | None:
        from kubernetes.dynamic.exceptions import NotFoundError

        resource = apply.api_resource(self.client, {"apiVersion": api_version, "kind": kind})
        try:
            obj: dict[str, Any] = resource.get(name=name, namespace=namespace).to_dict()
        except NotFoundError:
            return None
        except Exception as error:
            raise TargetError(f"reading {kind} {namespace}/{name}: {apply.api_error_reason(error)}") from None
        return obj

    def _patch_run_strategy(self, planned: PlannedVM, strategy: str) -> None:
        resource = apply.api_resource(self.client, {"apiVersion": KUBEVIRT, "kind": "VirtualMachine"})
        log.info("kubernetes: PATCH VirtualMachine %s/%s runStrategy=%s", self._ns(), planned.target_name, strategy)
        try:
            resource.patch(
                name=planned.target_name,
                namespace=self._ns(),
                body={"spec": {"runStrategy": strategy}},
                content_type="application/merge-patch+json",
            )
        except Exception as error:
            raise TargetError(
                f"setting runStrategy {strategy} on {planned.target_name}: {apply.api_error_reason(error)}"
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
        discarded = forget_earlier_copies(planned, apply_work_dir(plan, planned))
        namespace = self._ns(plan)
        for disk in planned.disks:
            for kind, api_version in (("PersistentVolumeClaim", "v1"), ("DataVolume", "cdi.kubevirt.io/v1beta1")):
                try:
                    live = self._get(kind, disk.claim_name, namespace, api_version=api_version)
                except TargetError:
                    continue  # CDI not installed: no DataVolumes
                if live and apply.FILLED_ANNOTATION in ((live.get("metadata") or {}).get("annotations") or {}):
                    # the filler's field manager owns the mark: applying without it removes it, so it refills
                    body = {
                        "apiVersion": api_version,
                        "kind": kind,
                        "metadata": {"name": disk.claim_name, "namespace": namespace},
                    }
                    self.client.server_side_apply(
                        apply.api_resource(self.client, body),
                        body=body,
                        name=disk.claim_name,
                        namespace=namespace,
                        field_manager=f"{apply.FIELD_MANAGER}-filler",
                        force_conflicts=True,
                    )
                    discarded.append(f"{kind} {disk.claim_name}")
        return discarded

    def transfer(self, plan: Plan, planned: PlannedVM) -> int:
        # the volumes are filled with the images as copied; the convert-guest step converts them in the cluster
        result = convert(
            self.origin.convert_request(
                planned,
                apply=True,
                kubeconfig=self.kubeconfig,
                context=self.context,
                namespace=self._ns(plan),
                skip_conversion=self.skip_conversion,
                defer_conversion=True,
            )
        )
        if result.converted:
            self._copied_again = True  # the claims hold a fresh copy: no earlier conversion of them applies
        images = [t.target for t in disk_jobs.planned_transfers(planned, apply_work_dir(plan, planned), "raw")]
        return allocated_bytes(images) if result.converted else 0

    def convert_guest(self, plan: Plan, planned: PlannedVM, *, skip: bool) -> str:
        """virt-v2v in a Job that mounts the VM's claims (conversion_job); then the VirtualMachine gets virtio."""
        if skip:
            return "skipped (--skip-conversion)"
        detail = conversion_job.convert_in_job(
            self.client,
            plan,
            planned,
            self._ns(plan),
            fresh=self._copied_again,
            announce=self.announce,
            timeout=self.conversion_timeout,
        )
        self._copied_again = False
        return detail

    def start(self, plan: Plan, planned: PlannedVM, *, run: bool) -> None:
        self._patch_run_strategy(planned, "Always" if run else "Halted")  # the controller starts it once

    def wait_running(self, planned: PlannedVM, timeout: float) -> None:
        phase: str | None = None

        def running() -> bool:
            nonlocal phase
            vmi = self._get("VirtualMachineInstance", planned.target_name, self._ns()) or {}
            phase = (vmi.get("status") or {}).get("phase")
            if phase in ("Failed", "Succeeded"):
                raise TargetError(f"VirtualMachineInstance {planned.target_name} is {phase}")
            return phase == "Running"

        if not wait_until(running, timeout=timeout, interval=POLL):
            raise TargetError(f"{planned.target_name} was not Running within {timeout:.0f}s (phase {phase})")

    def verify(self, planned: PlannedVM, verification: Verification) -> None:
        if verification.tcp_port is None:
            return
        port = verification.tcp_port
        address: str | None = None

        def accepts() -> bool:
            nonlocal address
            vmi = self._get("VirtualMachineInstance", planned.target_name, self._ns()) or {}
            interfaces = (vmi.get("status") or {}).get("interfaces") or []
            address = next((i.get("ipAddress") for i in interfaces if i.get("ipAddress")), None)
            if not address:
                return False
            try:
                with socket.create_connection((address, port), timeout=5):
                    return True
            except OSError:
                return False

        if not wait_until(accepts, timeout=verification.timeout, interval=POLL):
            raise TargetError(
                f"{planned.target_name} did not accept connections on port {port} "
                f"({address or 'no IP address yet'}) within {verification.timeout:.0f}s"
            )

    def stop(self, planned: PlannedVM, grace: float) -> TargetStop:
        """runStrategy Halted (a clean shutdown); after ``grace`` seconds the instance is deleted with no grace
        of its own. Confirmed once the VirtualMachineInstance is gone."""
        name, namespace = planned.target_name, self._ns()
        if self._get("VirtualMachine", name, namespace) is None:
            return TargetStop(True, f"target {name} does not exist")

        def gone() -> bool:
            return self._get("VirtualMachineInstance", name, namespace) is None

        self._patch_run_strategy(planned, "Halted")
        if wait_until(gone, timeout=grace, interval=POLL):
            return TargetStop(True, f"target {name} stopped (runStrategy Halted)")
        log.info("cluster target %s/%s: instance still there after %.0fs: deleting it now", namespace, name, grace)
        resource = apply.api_resource(self.client, {"apiVersion": KUBEVIRT, "kind": "VirtualMachineInstance"})
        try:
            resource.delete(name=name, namespace=namespace, body={"gracePeriodSeconds": 0})
        except Exception as error:
            if not gone():
                return TargetStop(
                    False, f"target {name}: deleting its instance failed: {apply.api_error_reason(error)}"
                )
        if wait_until(gone, timeout=DESTROY_WAIT, interval=POLL):
            return TargetStop(True, f"target {name} stopped: its instance deleted after the {grace:.0f}s grace period")
        return TargetStop(False, f"target {name}: its instance still exists {DESTROY_WAIT:.0f}s after its deletion")

    def remove(self, plan: Plan, planned: PlannedVM) -> str:
        """Delete the VirtualMachine and its volumes (PVCs or DataVolumes) from the namespace."""
        from kubernetes.dynamic.exceptions import NotFoundError

        namespace = self._ns(plan)
        objects = [("VirtualMachine", KUBEVIRT, planned.target_name)]
        for disk in planned.disks:
            objects += [("DataVolume", "cdi.kubevirt.io/v1beta1", disk.claim_name)]
            objects += [("PersistentVolumeClaim", "v1", disk.claim_name)]
        deleted = []
        for kind, api_version, name in objects:
            try:
                resource = apply.api_resource(self.client, {"apiVersion": api_version, "kind": kind})
                resource.delete(name=name, namespace=namespace)
                deleted.append(f"{kind} {name}")
            except NotFoundError:
                continue
            except Exception as error:
                if kind == "DataVolume":
                    continue  # CDI not installed: no DataVolumes to delete
                raise TargetError(f"deleting {kind} {namespace}/{name}: {apply.api_error_reason(error)}") from None
        return f"target {planned.target_name} removed from {namespace} ({', '.join(deleted) or 'nothing left'})"
