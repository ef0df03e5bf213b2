"""Which planned VMs a `migrate` run moves, grouped in the plan's waves, in order.

Pure: plan + flags → ``Selection``. ``--vm`` names or globs (source or target names) must each
match a planned VM; ``--wave NAME`` keeps one wave; a VM whose Critical concerns are not all
named by ``--force`` is skipped with its reason, as ``convert`` and ``cutover`` would refuse it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.errors import InputError, NotFoundError
from core.plan import CutoverWindow, Plan, PlannedVM

_GLOB_CHARS = set("*?[")
NO_WAVE = None  # the group of VMs the plan puts in no wave: migrated after the last wave


@dataclass(frozen=True)
class Skip:
    vm: str
    reason: str


@dataclass
class WaveRun:
    name: str | None  # None: the VMs of no wave (or a plan without waves)
    vms: list[PlannedVM] = field(default_factory=list)
    window: CutoverWindow | None = None


@dataclass
class Selection:
    waves: list[WaveRun]
    skipped: list[Skip]

    @property
    def vms(self) -> list[PlannedVM]:
        return [vm for wave in self.waves for vm in wave.vms]


def _matches(vm: PlannedVM, pattern: str) -> bool:
    names = (vm.source_name, vm.target_name)
    if _GLOB_CHARS & set(pattern):
        return any(fnmatch.fnmatchcase(n, pattern) for n in names)
    return pattern in names


def _chosen(plan: Plan, patterns: Sequence[str]) -> list[PlannedVM]:
    if not patterns:
        return list(plan.vms)
    picked: list[PlannedVM] = []
    for pattern in patterns:
        matches = [vm for vm in plan.vms if _matches(vm, pattern)]
        if not matches:
            raise NotFoundError(f"no VM named {pattern!r} in plan {plan.name}")
        picked.extend(vm for vm in matches if all(vm is not p for p in picked))
    return picked


def _blocked_reason(vm: PlannedVM, force: Sequence[str]) -> str | None:
    unforced = [cid for cid in vm.critical_ids() if cid not in force]
    if not unforced:
        return None
    flags = " ".join(f"--force {cid}" for cid in unforced)
    return f"blocked by Critical concern(s) {', '.join(unforced)} (migrate it anyway with {flags})"


def select(plan: Plan, patterns: Sequence[str] = (), wave: str | None = None, force: Sequence[str] = ()) -> Selection:
    chosen = _chosen(plan, patterns)
    if wave is not None and plan.wave(wave) is None:
        known = ", ".join(w.name for w in plan.waves) or "none"
        raise InputError(f"plan {plan.name} has no wave {wave!r} (waves: {known})")
    chosen_names = {vm.source_name for vm in chosen}
    groups: list[WaveRun] = []
    placed: set[str] = set()
    for planned_wave in plan.waves:
        members = [plan.vm(name) for name in planned_wave.vms]
        in_run = [vm for vm in members if vm is not None and vm.source_name in chosen_names]
        placed.update(vm.source_name for vm in members if vm is not None)
        if wave is None or planned_wave.name == wave:
            groups.append(WaveRun(planned_wave.name, in_run, planned_wave.window))
    if wave is None:
        rest = [vm for vm in chosen if vm.source_name not in placed]
        if rest or not groups:
            groups.append(WaveRun(NO_WAVE, rest))
    skipped: list[Skip] = []
    for group in groups:
        ready = []
        for vm in group.vms:
            reason = _blocked_reason(vm, force)
            if reason is None:
                ready.append(vm)
            else:
                skipped.append(Skip(vm.source_name, reason))
        group.vms = ready
    if not any(group.vms for group in groups) and not skipped:
        what = f"wave {wave}" if wave else "the selection"
        raise NotFoundError(f"no VM to migrate in {what} of plan {plan.name}")
    return Selection([g for g in groups if g.vms], skipped)
