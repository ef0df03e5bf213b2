"""Where a warm migration's rounds land (``precopy.WarmTarget``): the local runtime or a cluster.

Local (``--output-dir DIR``): the rounds write straight into ``DIR/<claim>.img``, the image the
local runtime boots; the VirtualMachine and volume manifests are written beside it (Halted) once.

Cluster: the rounds write into the image under convert's work dir (as ``convert --apply`` keeps
it), and each round's extents then go into the PersistentVolumeClaim through a filler pod: the
whole image the first time, only the changed extents afterwards (``migrator.convert.fill_delta``).
The volumes and the VirtualMachine (Halted) are applied once, before the first round. After the
final delta, the guest is converted in the cluster, in the claims themselves: the cold cluster
target's conversion Job (``conversion_job.convert_in_job``), which then applies the VirtualMachine
again with virtio. The staged images keep the source's bytes (nothing is copied after the conversion).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from converters.specs import SpecOptions, vm_manifests
from core.plan import Plan, PlannedDisk, PlannedVM
from migrator.convert import cluster as apply
from migrator.convert import disks as disk_jobs
from migrator.convert import fill_delta, output
from migrator.convert.run import apply_work_dir
from migrator.cutover.targets import conversion_job


class LocalWarmTarget:
    def __init__(self, output_dir: Path) -> None:
        self.output_dir = output_dir.expanduser().resolve()

    def prepare(self, plan: Plan, planned: PlannedVM) -> None:
        vm_file = self.output_dir / f"{planned.target_name}-vm.yaml"
        if vm_file.exists():
            return  # written by an earlier run; `start` may have changed its runStrategy since
        output.write_manifests(self.output_dir, vm_manifests(planned, plan, SpecOptions()))

    def image(self, plan: Plan, planned: PlannedVM, disk: PlannedDisk) -> Path:
        return disk_jobs.image_path(self.output_dir, disk.claim_name, "raw")

    def publish(
        self, plan: Plan, planned: PlannedVM, disk: PlannedDisk, extents: list[tuple[int, int]], *, full: bool, key: str
    ) -> None:
        """The image is the volume: nothing to do."""

    def convert_guest(self, plan: Plan, planned: PlannedVM, *, skip: bool, announce: Callable[[str], None]) -> None:
        """The local cutover target converts the output directory's images (and rewrites the manifests)."""
        return None


class ClusterWarmTarget:
    def __init__(
        self,
        kubeconfig: str | None,
        namespace: str | None,
        *,
        conversion_timeout: float = conversion_job.TIMEOUT,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.conversion_timeout = conversion_timeout
        # A round wrote into the claims in this run: an earlier conversion's state on them no longer applies.
        # A re-run that resumes at convert-guest (no round since) resumes that conversion instead.
        self._written = False
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = apply.dynamic_client(self.kubeconfig)
        return self._client

    def _plan_namespace(self, plan: Plan) -> Plan:
        if self.namespace:
            plan.target_namespace = self.namespace
        return plan

    def prepare(self, plan: Plan, planned: PlannedVM) -> None:
        manifests = vm_manifests(planned, self._plan_namespace(plan), SpecOptions())
        for volume in manifests.volumes:
            apply.server_side_apply(self.client, volume)
        apply.server_side_apply(self.client, manifests.virtual_machine)  # Halted: `start` runs it

    def image(self, plan: Plan, planned: PlannedVM, disk: PlannedDisk) -> Path:
        work_dir = apply_work_dir(plan, planned)
        work_dir.mkdir(parents=True, exist_ok=True)
        return disk_jobs.image_path(work_dir, disk.claim_name, "raw")

    def publish(
        self, plan: Plan, planned: PlannedVM, disk: PlannedDisk, extents: list[tuple[int, int]], *, full: bool, key: str
    ) -> None:
        manifests = vm_manifests(planned, self._plan_namespace(plan), SpecOptions())
        pvc = next(v for v in manifests.volumes if v["metadata"]["name"] == disk.claim_name)
        image = self.image(plan, planned, disk)
        self._written = True
        fill_delta.publish(self.client, pvc, image, None if full else extents, key=key)

    def convert_guest(self, plan: Plan, planned: PlannedVM, *, skip: bool, announce: Callable[[str], None]) -> str:
        """virt-v2v in a Job that mounts the claims, once the final delta is in them (the cold target's Job)."""
        if skip:
            return "skipped (--skip-conversion)"
        plan = self._plan_namespace(plan)
        detail = conversion_job.convert_in_job(
            self.client,
            plan,
            planned,
            plan.target_namespace or "default",
            fresh=self._written,
            announce=announce,
            timeout=self.conversion_timeout,
        )
        self._written = False
        return detail
