"""Cutover targets: one ``CutoverTarget`` per kind (``local.LocalTarget``, ``cluster.ClusterTarget``).

Both copy the disks through ``migrator.convert`` (the disk engine), so what a cutover writes
is exactly what ``migrator convert`` writes; ``DiskOrigin`` says where convert reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from converters.disks import discard_transfer
from converters.disks.ratelimit import RateLimiter
from core.plan import PlannedVM
from migrator.convert import ConvertRequest
from migrator.convert import disks as disk_jobs
from migrator.sources import SourceOptions


@dataclass(frozen=True)
class DiskOrigin:
    """Where the final transfer reads the disks: the plan file, or the source spec (never a password)."""

    plan_path: Path | None = None
    source: str | None = None
    source_options: SourceOptions = field(default_factory=SourceOptions)
    force: tuple[str, ...] = ()
    volumes_dir: Path | None = None  # cluster target, in a pod: each claim mounted at <dir>/<claim>/
    rate_limiter: RateLimiter | None = None  # asked once per chunk read (`migrate --max-rate`, progress, cancel)
    progress: str = "none"  # the transfer's progress, as `convert --progress`: auto, json or none

    def convert_request(
        self,
        planned: PlannedVM,
        *,
        output_dir: Path | None = None,
        apply: bool = False,
        kubeconfig: str | None = None,
        context: str | None = None,
        namespace: str | None = None,
        skip_conversion: bool | None = None,
        defer_conversion: bool = False,
    ) -> ConvertRequest:
        """The ``convert`` of ``planned``'s disks from here to the target given; always ``--verify``:
        at cutover the data matters most, every image is re-read from storage."""
        return ConvertRequest(
            vm=planned.source_name,
            plan_path=self.plan_path,
            source=self.source,
            source_options=self.source_options,
            output_dir=output_dir,
            apply=apply,
            kubeconfig=kubeconfig,
            context=context,
            namespace=namespace,
            force=self.force,
            progress=self.progress,
            skip_conversion=skip_conversion,
            defer_conversion=defer_conversion,
            rate_limiter=self.rate_limiter,
            volumes_dir=self.volumes_dir if apply else None,
            verify=True,
        )


def forget_earlier_copies(planned: PlannedVM, work_dir: Path, disk_format: str = "raw") -> list[str]:
    """Make the next transfer a full copy: the disk engine discards its record of each earlier transfer.

    An earlier ``convert`` copied the disks while the source ran, and vSphere's simulator (like
    any source without changed-block tracking) cannot say what changed since: the only honest
    final transfer of a cold cutover is a full copy. The images themselves stay in place and
    are rewritten. Returns the claims whose earlier copy was discarded.
    """
    return [
        transfer.claim
        for transfer in disk_jobs.planned_transfers(planned, work_dir, disk_format)
        if discard_transfer(transfer.target, transfer.target_format)
    ]


def allocated_bytes(paths: list[Path]) -> int:
    """Bytes really written to the images (sparse files: allocated blocks, not their size)."""
    total = 0
    for path in paths:
        try:
            total += path.stat().st_blocks * 512
        except OSError:
            pass
    return total
