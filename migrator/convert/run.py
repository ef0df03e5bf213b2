"""`migrator convert`: plan → gate → disk jobs → manifests → target (output directory or cluster)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from converters.disks import HttpSource, LocalSource, TarMemberSource
from converters.disks.ratelimit import RateLimiter
from converters.guest import Inspection
from converters.specs import Manifests, SpecOptions, dump, vm_manifests
from core.errors import InputError
from core.plan import Plan, PlannedDisk, PlannedVM
from migrator.convert import disks as disk_jobs
from migrator.convert import gate, guest, output, plans
from migrator.cutover.state import only_one_run
from migrator.sources import (
    DatastoreReader,
    Source,
    SourceOptions,
    inventory_of_vm,
    open_source,
    require_disks,
    split_source,
)
from migrator.sources.ovf import check_member_name

log = logging.getLogger(__name__)
Echo = Callable[[str], None]
DiskSource = LocalSource | HttpSource | TarMemberSource  # what the disk engine reads one disk from
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
    context: str | None = None  # the kubeconfig's context for --apply (default: its current-context)
    namespace: str | None = None
    force: tuple[str, ...] = ()
    datavolumes: bool = False
    volumes_dir: Path | None = None  # --apply from a pod that mounts each claim at <dir>/<claim>/ (plain PVCs)
    nic_compat: bool | None = None
    disk_format: str = "raw"
    dry_run: bool = False
    progress: str = "auto"
    concurrency: int = 2
    rate_limiter: RateLimiter | None = None  # shared by every transfer of a `migrate` run
    verify: bool = False  # re-read every image from storage and check it against the source's digests
    # guest conversion (converters.guest): skipped for guests known to be virtio-ready; "defer" leaves it
    # to the caller (cutover runs it as its own convert-guest step)
    skip_conversion: bool | None = None  # None: $MIGRATOR_SKIP_CONVERSION
    defer_conversion: bool = False
    virtio_win: str | None = None  # default: $VIRTIO_WIN
    accelerator: str | None = None  # kvm | tcg for libguestfs; None: the accelerator probe decides


@dataclass
class ConvertResult:
    plan: Plan
    planned: PlannedVM
    manifests: Manifests
    inspection: Inspection | None = None  # what the guest conversion found (None: skipped or deferred)
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


def _plan_for(request: ConvertRequest, source: Source | None) -> tuple[Plan, PlannedVM]:
    if request.plan_path is not None:
        plan = plans.load_plan(request.plan_path)
    else:
        assert source is not None and request.source is not None
        plan = plans.one_vm_plan(
            inventory_of_vm(source, request.vm),
            request.vm,
            source=source.url,
            namespace=request.namespace or "default",
        )
    if request.namespace:
        plan.target_namespace = request.namespace
    return plan, plans.find_vm(plan, request.vm)


def _spec_options(request: ConvertRequest, inspection: Inspection | None = None) -> SpecOptions:
    return spec_options(request.nic_compat, request.datavolumes, inspection)


def spec_options(nic_compat: bool | None, datavolumes: bool, inspection: Inspection | None) -> SpecOptions:
    """Spec choices; a converted guest gets virtio disks and NICs and the OS labels its inspection gives."""
    if inspection is None:
        return SpecOptions(nic_compat=nic_compat, use_datavolumes=datavolumes)
    return SpecOptions(
        nic_compat=nic_compat,
        use_datavolumes=datavolumes,
        virtio_ready=True if inspection.virtio_ready else None,
        os_id=inspection.osinfo,
        os_name=inspection.display_name,
        guest_converted_by=inspection.tool if inspection.converted else None,
    )


def guest_options(request: ConvertRequest) -> guest.GuestOptions:
    return guest.GuestOptions(
        skip=request.skip_conversion if request.skip_conversion is not None else guest.skip_by_default(),
        virtio_win=request.virtio_win,
        progress=request.progress,
        accelerator=request.accelerator,
    )


def disk_sources(
    scheme: str, location: str, source: Source | None, options: SourceOptions
) -> Callable[[PlannedDisk], DiskSource]:
    """How the disk engine reads a planned disk of this source: over its datastores' HTTP, or a local file."""
    if scheme in NEEDS_OPEN_SOURCE:
        if not isinstance(source, DatastoreReader):
            raise InputError(f"the {scheme} source cannot read its disks from a datastore")
        datastore = source

        def datastore_disk(disk: PlannedDisk) -> DiskSource:
            if disk.source_file is None:
                raise InputError(f"disk {disk.label} has no backing file to read")
            url = datastore.datastore_file_url(disk.source_file)
            return HttpSource(url, datastore.http_headers(), datastore.ssl_context())

        return datastore_disk
    descriptor = Path(location).expanduser().resolve()

    def local_disk(disk: PlannedDisk) -> DiskSource:
        if scheme == "ova":  # the OVF names tar members: read in place
            check_member_name(descriptor, disk.source_file)
            return TarMemberSource(descriptor, disk.source_file)
        return LocalSource(disk_jobs.resolve_local(descriptor.parent, disk.source_file, options.datastores()))

    return local_disk


def dry_run_text(
    result: ConvertResult, transfers: list[disk_jobs.PlannedTransfer] | None, *, skip_conversion: bool = False
) -> str:
    lines = [f"# dry run: VM {result.planned.source_name} → {result.manifests.name} (nothing written)"]
    for t in transfers or []:
        lines.append(f"# disk {t.disk.label}: {t.disk.source_file} → {t.target} ({t.target_format})")
    if transfers:
        lines.append(f"# guest: {'not converted (--skip-conversion)' if skip_conversion else guest_plan_line(result)}")
    body = "---\n".join(dump(obj) for obj in result.manifests.all())
    return "\n".join(lines) + "\n" + body


def guest_plan_line(result: ConvertResult) -> str:
    root = result.planned.guest_root or "first"
    return f"converted in place with virt-v2v-in-place -i libvirtxml --root {root} (skip with --skip-conversion)"


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
        settled = guest.satisfied_concerns(guest_options(request))
        forced = [c for c in gate.check_not_blocked(planned, (*request.force, *settled)) if c not in settled]
        for cid in gate.unknown_forced(planned, request.force):
            echo(f"warning: --force {cid}: not a Critical concern of {planned.source_name}, ignored")
        if forced:
            echo(f"warning: converting {planned.source_name} despite Critical concerns: {', '.join(forced)}")
        manifests = vm_manifests(planned, plan, _spec_options(request))
        result = ConvertResult(plan=plan, planned=planned, manifests=manifests)

        work_dir = request.output_dir or apply_work_dir(plan, planned)
        transfers = disk_jobs.planned_transfers(planned, work_dir, request.disk_format)
        if request.dry_run:
            skip = guest_options(request).skip
            out(dry_run_text(result, transfers if request.output_dir else None, skip_conversion=skip))
            return result

        # One writer per target: a second convert (or a cutover's transfer) of this VM into this output
        # now would write the same images. The lock lives in the output, not in the state directory: two
        # VMs of the same name converted into different outputs do not exclude each other.
        disk_jobs.prepare_output(work_dir)
        stack.enter_context(only_one_run(work_dir / disk_jobs.STATE_DIR, planned.target_name))
        client = None
        if request.apply:  # preflight: the kubeconfig loads and the API server answers, before any byte moves
            from migrator.convert import cluster

            client = cluster.dynamic_client(request.kubeconfig, request.context)
            log.info("convert: cluster reachable, namespace %s", manifests.virtual_machine["metadata"]["namespace"])
        if spec is None:
            spec = plan.source
        scheme, location = split_source(spec)
        if source is None and scheme in NEEDS_OPEN_SOURCE:  # a plan file: the disks are read through the source
            options = request.source_options.pinned_to(plan.source_thumbprint)
            source = stack.enter_context(_opened(spec, options))
        _transfer_disks(
            request, result, transfers, disk_sources(scheme, location, source, request.source_options), echo
        )
        if not request.defer_conversion:
            result.inspection = guest.convert_vm_guest(
                planned, transfers, work_dir, guest_options(request), echo, copied_again=bool(result.converted)
            )
            manifests = result.manifests = vm_manifests(planned, plan, _spec_options(request, result.inspection))
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
                context=request.context,
                client=client,
                echo=echo,
                volumes_dir=request.volumes_dir,
            )
    return result


def _transfer_disks(
    request: ConvertRequest,
    result: ConvertResult,
    transfers: list[disk_jobs.PlannedTransfer],
    make_source: Callable[[PlannedDisk], DiskSource],
    echo: Echo,
) -> None:
    """Copy the disks; the engine skips those an earlier run finished and resumes those cut short."""
    log.info("convert %s: %d disk(s)", result.planned.source_name, len(transfers))
    results = disk_jobs.run_transfers(
        transfers,
        make_source,
        concurrency=request.concurrency,
        progress=request.progress,
        rate_limiter=request.rate_limiter,
        vm=result.planned.source_name,
        verify=request.verify,
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


def apply_work_dir(plan: Plan, planned: PlannedVM) -> Path:
    """Where --apply without --output-dir keeps the converted images (resumable, never credentials)."""
    from core.paths import cache_dir

    return cache_dir() / "convert" / plans.dns_label(plan.name) / planned.target_name
