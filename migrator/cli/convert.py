"""`migrator convert --vm NAME`: copy a VM's disks and write (or apply) its KubeVirt manifests."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from migrator.cli.options import source_options
from migrator.convert import ConvertRequest
from migrator.convert import convert as run_convert
from migrator.sources import SourceOptions


@click.command("convert")
@click.option("--vm", "vm", required=True, help="The VM to convert (source or target name).")
@click.option("--plan", "plan_path", type=click.Path(path_type=Path), help="The plan file from `migrator plan`.")
@click.option("--source", help="Source (vsphere://USER@HOST[/DC], vmx:PATH, ovf:PATH, ova:PATH) when there is no plan.")
@source_options
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), help="Write images and manifests here.")
@click.option("--apply", "apply_", is_flag=True, help="Create the volumes and VirtualMachine in the cluster.")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), help="Kubeconfig for --apply (default: KUBECONFIG).")
@click.option("--namespace", help="Target namespace (default: the plan's, or 'default').")
@click.option("--force", multiple=True, metavar="ID", help="Convert despite this Critical concern (repeatable).")
@click.option("--datavolumes", is_flag=True, help="CDI DataVolumes instead of plain PersistentVolumeClaims.")
@click.option("--nic-compat/--no-nic-compat", default=None, help="e1000e NICs (default: when the guest lacks virtio).")
@click.option("--format", "disk_format", type=click.Choice(["raw", "qcow2"]), default="raw", show_default=True)
@click.option("--dry-run", is_flag=True, help="Print what would be created; write nothing.")
@click.option("--progress", type=click.Choice(["auto", "json", "none"]), default="auto", show_default=True)
@click.option("--concurrency", type=int, default=2, show_default=True, help="Disks copied at once.")
@click.option(
    "--verify/--no-verify",
    default=False,
    show_default=True,
    help="After an fsync, re-read every image from storage and check each chunk against the source's digest.",
)
def convert(
    vm: str,
    plan_path: Path | None,
    source: str | None,
    source_options: SourceOptions,
    output_dir: Path | None,
    apply_: bool,
    kubeconfig: str | None,
    namespace: str | None,
    force: tuple[str, ...],
    datavolumes: bool,
    nic_compat: bool | None,
    disk_format: str,
    dry_run: bool,
    progress: str,
    concurrency: int,
    verify: bool,
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
        namespace=namespace,
        force=force,
        datavolumes=datavolumes,
        nic_compat=nic_compat,
        disk_format=disk_format,
        dry_run=dry_run,
        progress=progress,
        concurrency=concurrency,
        verify=verify,
    )
    run_convert(request, echo=lambda line: click.echo(line, err=True), out=lambda text: click.echo(text, nl=False))
    sys.stdout.flush()
