"""The plan as a terminal table: one row per VM, then its concerns."""

from __future__ import annotations

from core.plan import NetworkTarget, Plan, PlannedVM, Severity

HEADERS = ("VM", "TARGET", "CPU", "MEMORY", "DISKS", "TRANSFER", "NETWORKS", "STATUS")
_MARK = {Severity.CRITICAL: "✗", Severity.WARNING: "!", Severity.INFORMATION: "i"}


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _networks(planned: PlannedVM) -> str:
    parts = []
    for nic in planned.nics:
        target = nic.multus if nic.target is NetworkTarget.MULTUS else nic.target.value
        parts.append(f"{nic.source_network or '-'}→{target}")
    return ", ".join(parts) or "-"


def _status(planned: PlannedVM) -> str:
    counts = {s: sum(1 for c in planned.concerns if c.severity is s) for s in Severity}
    if counts[Severity.CRITICAL]:
        return f"BLOCKED ({counts[Severity.CRITICAL]} critical)"
    if counts[Severity.WARNING]:
        return f"ok, {counts[Severity.WARNING]} warning(s)"
    return "ok"


UPPER_BOUND_MARK = "≤ "  # before a figure that is the capacity because the source did not report allocation
UPPER_BOUND_NOTE = "≤: the source did not report how much these disks hold; their capacity is the upper bound."


def transfer_text(size: int, upper_bound: bool) -> str:
    return f"{UPPER_BOUND_MARK if upper_bound else ''}{human_bytes(size)}"


def row(planned: PlannedVM) -> tuple[str, ...]:
    vm = planned.vm
    return (
        vm.name,
        planned.target_name,
        f"{vm.cpu.vcpus} ({vm.cpu.sockets}x{vm.cpu.cores_per_socket})",
        human_bytes(vm.memory_mib * 2**20),
        f"{len(planned.disks)} / {human_bytes(sum(d.capacity_bytes for d in planned.disks))}",
        transfer_text(planned.transfer_bytes, planned.transfer_bytes_upper_bound),
        _networks(planned),
        _status(planned),
    )


def aligned(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """Rows as left-aligned columns, a rule under the headers."""
    every = [headers, *rows]
    widths = [max(len(r[i]) for r in every) for i in range(len(headers))]
    lines = []
    for index, r in enumerate(every):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def title(plan: Plan) -> str:
    return f"Plan {plan.name!r}: {len(plan.vms)} VM(s) from {plan.source} → namespace {plan.target_namespace}"


def render(plan: Plan, concerns: bool = True, vm_table: str | None = None) -> str:
    """The plan for a terminal: a title, ``vm_table`` (default: ``aligned`` rows of ``row``), concerns, summary."""
    lines = [title(plan)]
    if vm_table is None:
        lines.extend(aligned(HEADERS, [row(v) for v in plan.vms]))
    else:
        lines.append(vm_table)
    if concerns:
        for planned in plan.vms:
            if planned.concerns:
                lines.append("")
                lines.append(f"{planned.source_name}:")
                for concern in planned.concerns:
                    lines.append(
                        f"  {_MARK[concern.severity]} {concern.severity.value:<11} {concern.id}: {concern.message}"
                    )
    lines.append("")
    lines.extend(summary(plan))
    return "\n".join(lines)


def summary(plan: Plan) -> list[str]:
    """The plan's last lines: how many VMs are ready, what must be copied (marked when an upper bound)."""
    blocked = sum(1 for v in plan.vms if v.blocked)
    upper_bound = any(v.transfer_bytes_upper_bound for v in plan.vms)
    total = transfer_text(sum(v.transfer_bytes for v in plan.vms), upper_bound)
    lines = [f"{len(plan.vms) - blocked} ready, {blocked} blocked; {total} to transfer."]
    if upper_bound:
        lines.append(UPPER_BOUND_NOTE)
    return lines
