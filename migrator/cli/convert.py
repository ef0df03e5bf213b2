"""`migrator convert --vm NAME`: copy a VM's disks and write (or apply) its KubeVirt manifests."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from migrator.cli.options import cluster_options, source_options, vm_option
from migrator.convert import ConvertRequest
from migrator.convert import convert as run_convert
from migrator.sources import SourceOptions


@click.command(
    "convert",
    epilog="""\b
Examples:
  migrator convert --plan plan.yaml --vm web01 --output-dir out/    # images + manifests on this machine
  migrator convert --plan plan.yaml --vm web01 --apply -n prod      # into the kubeconfig's cluster
  migrator convert --plan plan.yaml --vm web01 --apply --context staging --datavolumes
  migrator convert --source vmx:/vms/web01/web01.vmx --vm web01 --output-dir out/ --dry-run
  migrator convert --plan plan.yaml --vm web01 --output-dir out/ --progress json | jq -c .""",
)
@vm_option("The VM to convert (source or target name); once per run.")
@click.option("--plan", "plan_path", type=click.Path(path_type=Path), help="The plan file from `migrator plan`.")
@click.option("--source", help="Source (vsphere://USER@HOST[/DC], vmx:PATH, ovf:PATH, ova:PATH) when there is no plan.")
@source_options
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), help="Write images and manifests here.")
@click.option("--apply", "apply_", is_flag=True, help="Create the volumes and VirtualMachine in the cluster.")
@cluster_options(namespace_help="Target namespace (default: the plan's, or 'default').")
@click.option("--force", multiple=True, metavar="ID", help="Convert despite this Critical concern (repeatable).")
@click.option("--datavolumes", is_flag=True, help="CDI DataVolumes instead of plain PersistentVolumeClaims.")
@click.option("--nic-compat/--no-nic-compat", default=None, help="e1000e NICs (default: when the guest lacks virtio).")
@click.option(
    "--format",
    "disk_format",
    type=click.Choice(["raw", "qcow2"]),
    default="raw",
    show_default=True,
    help="Image format written for each disk (--apply with plain PVCs needs raw).",
)
@click.option("--dry-run", is_flag=True, help="Print what would be created; write nothing.")
@click.option(
    "--progress",
    type=click.Choice(["auto", "json", "none"]),
    default="auto",
    show_default=True,
    help="Per-disk bars on a terminal (auto), timestamped JSON events on stdout (json), or nothing.",
)
@click.option("--concurrency", type=int, default=2, show_default=True, help="Disks copied at once.")
@click.option(
    "--verify/--no-verify",
    default=False,
    show_default=True,
    help="After an fsync, re-read every image from storage and check each chunk against the source's digest.",
)
@click.option(
    "--skip-conversion",
    is_flag=True,
    envvar="MIGRATOR_SKIP_CONVERSION",
    help="Do not convert the guest OS (virt-v2v): only for virtio-ready guests.",
)
def convert(
    vm: str,
    plan_path: Path | None,
    source: str | None,
    source_options: SourceOptions,
    output_dir: Path | None,
    apply_: bool,
    kubeconfig: str | None,
    kube_context: str | None,
    namespace: str | None,
    force: tuple[str, ...],
    datavolumes: bool,
    nic_compat: bool | None,
    disk_format: str,
    dry_run: bool,
    progress: str,
    concurrency: int,
    verify: bool,
    skip_conversion: bool,
) -> None:
    """Convert one VM: its disks to images, its configuration to a KubeVirt VirtualMachine."""
    request = ConvertRequest(
        vm=vm,
        plan_path=plan_path,
        source=source,
        source_options=source_options,
        output_dir=output_dir,
        apply=apply_,
        kubeconfig=kubeconfig,
        context=kube_context,
        namespace=namespace,
        force=force,
        datavolumes=datavolumes,
        nic_compat=nic_compat,
        disk_format=disk_format,
        dry_run=dry_run,
        progress=progress,
        concurrency=concurrency,
        verify=verify,
        skip_conversion=skip_conversion,
    )
    run_convert(request, echo=lambda line: click.echo(line, err=True), out=lambda text: click.echo(text, nl=False))
    sys.stdout.flush()
