"""Compute: memory, vCPU topology, the CPU model (KubeVirt's converter: memory, cpu)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from runtime.domain.elements import parse_quantity, sub, unknown
from runtime.domain.model import DomainOptions, UnsupportedSpecError


def memory_bytes(domain_spec: Mapping[str, Any]) -> int:
    """The guest's memory: ``memory.guest``, else the memory request, else the limit."""
    memory = domain_spec.get("memory") or {}
    unknown(memory, {"guest", "hugepages"}, "spec.domain.memory")
    if memory.get("hugepages"):
        raise UnsupportedSpecError("spec.domain.memory.hugepages", "hugepages are not supported by this runtime")
    if memory.get("guest"):
        return parse_quantity(memory["guest"], "spec.domain.memory.guest")
    resources = domain_spec.get("resources") or {}
    for kind in ("requests", "limits"):
        value = (resources.get(kind) or {}).get("memory")
        if value:
            return parse_quantity(value, f"spec.domain.resources.{kind}.memory")
    raise UnsupportedSpecError("spec.domain.memory.guest", "no memory size (memory.guest or resources.requests.memory)")


def topology(spec: Mapping[str, Any]) -> tuple[int, int, int]:
    """``spec.domain.cpu``'s sockets, cores and threads."""
    unknown(spec, {"cores", "sockets", "threads", "model", "features", "dedicatedCpuPlacement"}, "spec.domain.cpu")
    if spec.get("dedicatedCpuPlacement"):
        raise UnsupportedSpecError("spec.domain.cpu.dedicatedCpuPlacement", "CPU pinning is not supported")
    values = []
    for key in ("sockets", "cores", "threads"):
        value = spec.get(key, 1) or 1
        if not isinstance(value, int) or value < 1:
            raise UnsupportedSpecError(f"spec.domain.cpu.{key}", f"must be a positive integer, not {value!r}")
        values.append(value)
    return values[0], values[1], values[2]


def cpu(root: ET.Element, spec: Mapping[str, Any], shape: tuple[int, int, int], options: DomainOptions) -> None:
    """``<cpu>``: the model (host-model/passthrough under KVM, QEMU's maximum under TCG), topology, features."""
    model = spec.get("model") or "host-model"
    if model in ("host-model", "host-passthrough"):
        # TCG cannot pass the host CPU through: the richest emulated CPU is the honest equivalent
        mode = model if options.accelerator == "kvm" else "maximum"
        element = sub(root, "cpu", mode=mode)
        if mode == "host-passthrough":
            element.set("check", "none")
    else:
        element = sub(root, "cpu", mode="custom", match="exact", check="none")
        sub(element, "model", model, fallback="forbid")
    sockets, cores, threads = shape
    sub(element, "topology", sockets=str(sockets), dies="1", cores=str(cores), threads=str(threads))
    for index, feature in enumerate(spec.get("features") or []):
        policy = feature.get("policy", "require")
        if policy not in ("force", "require", "optional", "disable", "forbid"):
            raise UnsupportedSpecError(f"spec.domain.cpu.features[{index}].policy", f"unknown policy {policy!r}")
        sub(element, "feature", policy=policy, name=str(feature["name"]))
