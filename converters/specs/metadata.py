"""Labels and annotations that tie a target object back to its source VM and plan."""

from __future__ import annotations

import re

from core.plan import Plan, PlannedVM

PREFIX = "migrator.io"
LABEL_PLAN = f"{PREFIX}/plan"
LABEL_VM = f"{PREFIX}/vm"
LABEL_SOURCE_MOREF = f"{PREFIX}/source-moref"
ANNOTATION_SOURCE = f"{PREFIX}/source"
ANNOTATION_SOURCE_NAME = f"{PREFIX}/source-name"
ANNOTATION_MOREF = f"{PREFIX}/source-moref"
ANNOTATION_INSTANCE_UUID = f"{PREFIX}/source-instance-uuid"
ANNOTATION_BIOS_UUID = f"{PREFIX}/source-bios-uuid"
ANNOTATION_PLAN = f"{PREFIX}/plan"
ANNOTATION_SOURCE_DISK = f"{PREFIX}/source-disk"
ANNOTATION_SOURCE_FILE = f"{PREFIX}/source-file"
ANNOTATION_GUEST_CONVERTED = f"{PREFIX}/guest-converted-by"
# What KubeVirt's common templates and UI read to show a VM's operating system
OS_LABEL_PREFIX = "os.template.kubevirt.io/"
OS_NAME_ANNOTATION_PREFIX = "name.os.template.kubevirt.io/"
VM_OS_ANNOTATION = "vm.kubevirt.io/os"

_LABEL_VALUE_BAD = re.compile(r"[^A-Za-z0-9_.-]+")


def label_value(value: str) -> str:
    """A valid label value (≤63 chars of [A-Za-z0-9_.-], alphanumeric at both ends), or "" when nothing is left."""
    cleaned = _LABEL_VALUE_BAD.sub("-", value)[:63]
    return cleaned.strip("-_.")


def vm_labels(plan: Plan, planned: PlannedVM) -> dict[str, str]:
    labels = {LABEL_PLAN: label_value(plan.name), LABEL_VM: label_value(planned.target_name)}
    if planned.vm.moref:
        labels[LABEL_SOURCE_MOREF] = label_value(planned.vm.moref)
    return {k: v for k, v in labels.items() if v}


def vm_annotations(plan: Plan, planned: PlannedVM) -> dict[str, str]:
    vm = planned.vm
    annotations = {
        ANNOTATION_SOURCE: plan.source,
        ANNOTATION_SOURCE_NAME: planned.source_name,
        ANNOTATION_PLAN: plan.name,
        ANNOTATION_MOREF: vm.moref,
        ANNOTATION_INSTANCE_UUID: vm.instance_uuid,
        ANNOTATION_BIOS_UUID: vm.bios_uuid,
    }
    return {k: v for k, v in annotations.items() if v}


def os_labels(os_id: str | None) -> dict[str, str]:
    value = label_value(os_id or "")
    return {f"{OS_LABEL_PREFIX}{value}": "true"} if value else {}


def os_annotations(os_id: str | None, os_name: str | None, converted_by: str | None) -> dict[str, str]:
    annotations: dict[str, str] = {}
    value = label_value(os_id or "")
    if value:
        annotations[VM_OS_ANNOTATION] = value
        if os_name:
            annotations[f"{OS_NAME_ANNOTATION_PREFIX}{value}"] = os_name
    if converted_by:
        annotations[ANNOTATION_GUEST_CONVERTED] = converted_by
    return annotations
