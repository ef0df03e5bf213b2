"""`migrator convert`: plan → gate → disk jobs → manifests → target (output directory or cluster)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from converters.disks import HttpSource, LocalSource, TarMemberSource
from converters.specs import Manifests, SpecOptions, dump, vm_manifests
from core.errors import InputError
from core.inventory import Inventory
from core.plan import Plan, PlannedVM
from migrator.convert import disks as disk_jobs
from migrator.convert import gate, output, plans
from migrator.cutover.state import default_state_dir, only_one_run
from migrator.sources import Source, SourceOptions, open_source, require_disks, split_source
from migrator.sources.ovf import check_member_name

log = logging.getLogger(__name__)
Echo = Callable[[str], None]
# Sources whose disks are read through the adapter; VMX/OVF/OVA disks are files (or tar members) on local disk.
NEEDS_OPEN_SOURCE = ("vsphere",)


@dataclass(frozen=True)
class ConvertRequest:
    vm: str
    plan_path: Path | None = None
    source: str | None = None
    source_options: SourceOptions = field(default_factory=SourceOptions)
    output_dir: Path | None = None
    apply: bool = False
    kubeconfig: str | None = None
    namespace: str | None = None
    force: tuple[str, ...] = ()
    datavolumes: bool = False
    nic_compat: bool | None = None
    disk_format: str = "raw"
    dry_run: bool = False
    progress: str = "auto"
    concurrency: int = 2
    verify: bool = False  # re-read every image from storage and check it against the source's digests


@dataclass
class ConvertResult:
    plan: Plan
    planned: PlannedVM
    manifests: Manifests
    converted: list[str] = field(default_factory=list)  # claims whose disk was copied in this run
    skipped: list[str] = field(default_factory=list)  # claims already finished by an earlier run
    files: list[Path] = field(default_factory=list)


def _validate(request: ConvertRequest) -> None:
    if request.plan_path is None and request.source is None:
        raise InputError("convert needs --plan FILE or --source SPEC")
    if not request.dry_run and not request.apply and request.output_dir is None:
        raise InputError("convert needs a target: --output-dir DIR or --apply (or --dry-run)")
    if request.apply and not request.datavolumes and request.disk_format != "raw":
        raise InputError("--apply with plain PVCs writes a raw disk.img: use --format raw, or --datavolumes")
    if request.concurrency < 1:
        raise InputError("--concurrency must be at least 1")


@contextlib.contextmanager
def _opened(spec: str, options: SourceOptions) -> Iterator[Source]:
    source = open_source(spec, options)
    try:
        yield source
    finally:
        source.close()


def _inventory_of(source: Source, vm_name: str) -> Inventory:
    """One VM's inventory: the vSphere adapter re-reads a single VM instead of the whole vCenter."""
    vm_inventory = getattr(source, "vm_inventory", None)
    if vm_inventory is not None:
        vm = vm_inventory(vm_name)
        about = getattr(source, "about", None)
        return Inventory(source_url=source.url, vms=[vm], about=dict(about) if isinstance(about, dict) else {})
    return source.inventory()


def _plan_for(request: ConvertRequest, source: Source | None) -> tuple[Plan, PlannedVM]:
    if request.plan_path is not None:
        plan = plans.load_plan(request.plan_path)
    else:
        assert source is not None and request.source is not None
        plan = plans.one_vm_plan(
            _inventory_of(source, request.vm),
            request.vm,
            source=source.url,
            namespace=request.namespace or "default",
        )
    if request.namespace:
        plan.target_namespace = request.namespace
    return plan, plans.find_vm(plan, request.vm)


def _spec_options(request: ConvertRequest) -> SpecOptions:
    return SpecOptions(nic_compat=request.nic_compat, use_datavolumes=request.datavolumes)


def _make_source(scheme: str, location: str, source: Source | None, options: SourceOptions) -> Callable[[Any], Any]:
    if scheme == "vsphere":

        def vsphere_disk(disk: Any) -> Any:
            vsphere: Any = source
            url = vsphere.datastore_file_url(disk.source_file)
            return HttpSource(url, vsphere.http_headers(), vsphere.ssl_context())

        return vsphere_disk
    descriptor = Path(location).expanduser().resolve()

    def local_disk(disk: Any) -> Any:
        if scheme == "ova":  # the OVF names tar members: read in place
            check_member_name(descriptor, disk.source_file)
            return TarMemberSource(descriptor, disk.source_file)
        return LocalSource(disk_jobs.resolve_local(descriptor.parent, disk.source_file, options.datastores()))

    return local_disk


def dry_run_text(result: ConvertResult, transfers: list[disk_jobs.PlannedTransfer] | None) -> str:
    lines = [f"# dry run: VM {result.planned.source_name} → {result.manifests.name} (nothing written)"]
    for t in transfers or []:
        lines.append(f"# disk {t.disk.label}: {t.disk.source_file} → {t.target} ({t.target_format})")
    body = "---\n".join(dump(obj) for obj in result.manifests.all())
    return "\n".join(lines) + "\n" + body


def convert(request: ConvertRequest, echo: Echo = lambda _line: None, out: Echo = lambda _text: None) -> ConvertResult:
    """Run one conversion; ``echo`` gets progress lines, ``out`` the --dry-run listing."""
    _validate(request)
    spec = request.source
    source: Source | None = None
    with contextlib.ExitStack() as stack:
        if request.source is not None:
            source = stack.enter_context(_opened(request.source, request.source_options))
        plan, planned = _plan_for(request, source)
        if not request.dry_run:
            require_disks(spec or plan.source, "convert")  # before any gate: no --force makes disks appear
        forced = gate.check_not_blocked(planned, request.force)
        for cid in gate.unknown_forced(planned, request.force):
            echo(f"warning: --force {cid}: not a Critical concern of {planned.source_name}, ignored")
        if forced:
            echo(f"warning: converting {planned.source_name} despite Critical concerns: {', '.join(forced)}")
        manifests = vm_manifests(planned, plan, _spec_options(request))
        result = ConvertResult(plan=plan, planned=planned, manifests=manifests)

        work_dir = request.output_dir or _work_dir(plan, planned)
        transfers = disk_jobs.planned_transfers(planned, work_dir, request.disk_format)
        if request.dry_run:
            out(dry_run_text(result, transfers if request.output_dir else None))
            return result

        # one writer per VM: a second convert (or a cutover) of it now would write the same images
        stack.enter_context(only_one_run(default_state_dir(), planned.source_name))
        if spec is None:
            spec = plan.source
        scheme, location = split_source(spec)
        if source is None and scheme in NEEDS_OPEN_SOURCE:  # a plan file: the disks are read through the source
            options = request.source_options.pinned_to(plan.source_thumbprint)
            source = stack.enter_context(_opened(spec, options))
        _transfer_disks(
            request, result, transfers, _make_source(scheme, location, source, request.source_options), echo
        )
        if request.output_dir is not None:
            result.files = output.write_manifests(request.output_dir, manifests)
            for path in result.files:
                echo(f"wrote {path}")
        if request.apply:
            from migrator.convert import cluster

            cluster.apply(
                manifests,
                {t.claim: t.target for t in transfers},
                kubeconfig=request.kubeconfig,
                echo=echo,
            )
    return result


def _transfer_disks(
    request: ConvertRequest,
    result: ConvertResult,
    transfers: list[disk_jobs.PlannedTransfer],
    make_source: Callable[[Any], Any],
    echo: Echo,
) -> None:
    """Copy the disks; the engine skips those an earlier run finished and resumes those cut short."""
    results = disk_jobs.run_transfers(
        transfers, make_source, concurrency=request.concurrency, progress=request.progress, verify=request.verify
    )
    for t, done in zip(transfers, results, strict=True):
        if done.skipped:
            result.skipped.append(t.claim)
            echo(f"disk {t.claim}: already converted, skipped")
        else:
            result.converted.append(t.claim)
            echo(f"disk {t.claim}: converted to {t.target}")
        if done.verified and done.verified_bytes:
            rate = done.verified_bytes / max(done.verify_seconds, 1e-6) / 2**20
            echo(f"disk {t.claim}: verified {done.verified_bytes / 2**20:.0f} MiB from storage ({rate:.0f} MiB/s)")


def _work_dir(plan: Plan, planned: PlannedVM) -> Path:
    """Where --apply without --output-dir keeps the converted images (resumable, never credentials)."""
    from core.paths import cache_dir

    return cache_dir() / "convert" / plans.dns_label(plan.name) / planned.target_name
