"""PlannedVM + Plan + options → a kubevirt.io/v1 VirtualMachine (a plain dict, ready to dump)."""

from __future__ import annotations

from typing import Any

from converters.specs import cpu as cpu_spec
from converters.specs import devices, firmware, network
from converters.specs.guest import guest_virtio_ready
from converters.specs.metadata import LABEL_VM, PREFIX, os_annotations, os_labels, vm_annotations, vm_labels
from converters.specs.options import SpecOptions
from core.inventory import Disk
from core.plan import Plan, PlannedVM

KUBEVIRT_API_VERSION = "kubevirt.io/v1"


def virtio_ready(planned: PlannedVM, options: SpecOptions) -> bool:
    return options.virtio_ready if options.virtio_ready is not None else guest_virtio_ready(planned.vm)


def nic_model(planned: PlannedVM, options: SpecOptions) -> str:
    compat = options.nic_compat if options.nic_compat is not None else not virtio_ready(planned, options)
    return "e1000e" if compat else "virtio"


def vm_volume_name(index: int) -> str:
    """The name of a disk's entry in the VirtualMachine's ``volumes`` (its claim is ``PlannedDisk.claim_name``)."""
    return f"disk-{index}"


def source_disks(planned: PlannedVM) -> list[Disk | None]:
    """The source disk behind each planned disk (by label), None when the source no longer lists it."""
    by_label = {d.label: d for d in planned.vm.disks}
    return [by_label.get(p.label) for p in planned.disks]


def virtual_machine(planned: PlannedVM, plan: Plan, options: SpecOptions) -> dict[str, Any]:
    vm = planned.vm
    ready = virtio_ready(planned, options)
    sources = source_disks(planned)
    boot = devices.boot_disk(vm, [d for d in sources if d is not None])

    disks: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    for index, (planned_disk, source) in enumerate(zip(planned.disks, sources, strict=True)):
        name = vm_volume_name(index)
        is_boot = source is boot if boot is not None else index == 0
        disks.append(devices.disk_entry(name, planned_disk, source, virtio_ready=ready, boot=is_boot))
        if options.use_datavolumes:
            volumes.append({"name": name, "dataVolume": {"name": planned_disk.claim_name}})
        else:
            volumes.append({"name": name, "persistentVolumeClaim": {"claimName": planned_disk.claim_name}})
    if options.keep_empty_cdroms:
        # Kept as empty drives (KubeVirt ≥ 1.6 allows a cdrom disk without a volume): the ISO is not migrated.
        for index, cdrom in enumerate(sorted(vm.cdroms, key=lambda c: (c.controller.bus_number, c.unit_number))):
            disks.append(devices.cdrom_entry(f"cdrom-{index}", cdrom))

    interfaces, networks = network.interfaces_and_networks(planned, nic_model(planned, options))
    device_spec: dict[str, Any] = {"disks": disks, "interfaces": interfaces}
    if not interfaces:
        device_spec["autoattachPodInterface"] = False  # no NIC mapped: do not let KubeVirt add one
    if vm.vtpm:
        device_spec["tpm"] = {"persistent": True}

    memory = cpu_spec.memory_quantity(vm)
    domain: dict[str, Any] = {
        "cpu": cpu_spec.cpu(vm),
        "memory": {"guest": memory},
        "resources": {"requests": {"memory": memory}},
        "firmware": firmware.firmware(vm),
        "machine": {"type": "q35"},
        "devices": device_spec,
    }
    feature_spec = firmware.features(vm)
    if feature_spec:
        domain["features"] = feature_spec

    annotations = vm_annotations(plan, planned)
    annotations.update(os_annotations(options.os_id, options.os_name, options.guest_converted_by))
    for index, cdrom in enumerate(sorted(vm.cdroms, key=lambda c: (c.controller.bus_number, c.unit_number))):
        if cdrom.iso_file and options.keep_empty_cdroms:
            annotations[f"{PREFIX}/cdrom-{index}-source-iso"] = cdrom.iso_file

    labels = {**vm_labels(plan, planned), **os_labels(options.os_id)}
    template_labels = {LABEL_VM: labels[LABEL_VM]} if LABEL_VM in labels else {}
    template_labels.update(os_labels(options.os_id))
    return {
        "apiVersion": KUBEVIRT_API_VERSION,
        "kind": "VirtualMachine",
        "metadata": {
            "name": planned.target_name,
            "namespace": plan.target_namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {
            "runStrategy": options.run_strategy,
            "template": {
                "metadata": {"labels": template_labels},
                "spec": {
                    "terminationGracePeriodSeconds": options.termination_grace_period_seconds,
                    "domain": domain,
                    "networks": networks,
                    "volumes": volumes,
                },
            },
        },
    }
