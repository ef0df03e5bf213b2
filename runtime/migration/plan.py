"""The few facts of a plan document the controller needs (the pods read the whole plan themselves)."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

GLOB = set("*?[")


@dataclass(frozen=True)
class PlanDisk:
    claim: str
    capacity_bytes: int
    storage_class: str | None


@dataclass(frozen=True)
class PlanVM:
    name: str  # the source name
    target_name: str
    disks: tuple[PlanDisk, ...]
    blocked: bool
    warm: bool = False  # `type: warm` in the plan: not migrated by a Migration yet


class PlanError(ValueError):
    pass


def vms_of(document: dict[str, Any]) -> list[PlanVM]:
    if not isinstance(document, dict) or document.get("kind") != "Plan" or not isinstance(document.get("vms"), list):
        raise PlanError("spec.plan is not a migrator plan (kind: Plan with vms)")
    found = []
    for vm in document["vms"]:
        try:
            disks = tuple(
                PlanDisk(d["claim_name"], int(d["capacity_bytes"]), d.get("storage_class")) for d in vm["disks"]
            )
            blocked = any(c.get("severity") == "Critical" for c in vm.get("concerns") or [])
            found.append(PlanVM(vm["source_name"], vm["target_name"], disks, blocked, vm.get("type") == "warm"))
        except (KeyError, TypeError, ValueError) as error:
            raise PlanError(f"spec.plan: a VM entry lacks {error}") from None
    return found


def select(vms: Sequence[PlanVM], patterns: Sequence[str]) -> list[PlanVM]:
    """``spec.vms`` (names or globs, source or target names); all VMs when empty. Unknown names: PlanError."""
    if not patterns:
        return list(vms)
    chosen: list[PlanVM] = []
    for pattern in patterns:
        if GLOB & set(pattern):
            matches = [v for v in vms if any(fnmatch.fnmatchcase(n, pattern) for n in (v.name, v.target_name))]
        else:
            matches = [v for v in vms if pattern in (v.name, v.target_name)]
        if not matches:
            raise PlanError(f"spec.vms: no VM {pattern!r} in the plan")
        chosen += [v for v in matches if v not in chosen]
    return chosen
