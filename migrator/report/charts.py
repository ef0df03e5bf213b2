"""The report's charts: matplotlib figures rendered to inline SVG.

The SVG is made to live inside the HTML page: no XML prolog, no namespace declarations or
metadata (an HTML parser needs neither, and the file then names no URL at all), text kept as
text so it scales and can be searched.
"""

from __future__ import annotations

import io
import re

import matplotlib

matplotlib.use("Agg")  # no display: render to files only

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from core.plan import Severity
from migrator.report.figures import Breakdown, ConcernGroup, ReportData

READINESS_COLOURS = {"ready": "#2e7d32", "warnings": "#f9a825", "blocked": "#c62828"}
SEVERITY_COLOURS = {Severity.CRITICAL: "#c62828", Severity.WARNING: "#f9a825", Severity.INFORMATION: "#1565c0"}
_SIZE_UNITS = (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))
_TIME_UNITS = (("days", 86400.0), ("hours", 3600.0), ("minutes", 60.0), ("seconds", 1.0))


def _unit(largest: float, units: tuple[tuple[str, float], ...]) -> tuple[str, float]:
    """The largest unit in which the largest value is at least 1 (so axes read 0-40 GiB, not 0-0.04 TiB)."""
    return next(((name, size) for name, size in units if largest >= size), units[-1])


_STYLE = {
    "svg.fonttype": "none",
    "svg.hashsalt": "migrator-report",  # stable ids: the same plan gives the same file
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def _svg(figure: plt.Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(figure)
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.DOTALL)
    return text.strip()


def readiness_chart(data: ReportData) -> str:
    counts = {"ready": data.totals.ready, "warnings": data.totals.warnings, "blocked": data.totals.blocked}
    with plt.rc_context(_STYLE):
        figure, axes = plt.subplots(figsize=(4.2, 1.6))
        left = 0
        for name, count in counts.items():
            if count:
                axes.barh([0], [count], left=left, color=READINESS_COLOURS[name], label=f"{name} ({count})")
                axes.text(left + count / 2, 0, str(count), ha="center", va="center", color="white", weight="bold")
                left += count
        axes.set_xlim(0, max(1, left))
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_yticks([])
        axes.set_xlabel("VMs")
        axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.45), ncol=3, frameon=False)
        return _svg(figure)


def storage_chart(rows: list[Breakdown], title: str, limit: int = 8) -> str:
    shown = rows[:limit][::-1]
    unit, size = _unit(max((r.provisioned_bytes for r in shown), default=0), _SIZE_UNITS)
    names = [r.name for r in shown]
    allocated = [r.allocated_bytes / size for r in shown]
    unknown = [r.unknown_allocation_bytes / size for r in shown]
    rest = [max(0.0, (r.provisioned_bytes - r.allocated_bytes - r.unknown_allocation_bytes) / size) for r in shown]
    with plt.rc_context(_STYLE):
        figure, axes = plt.subplots(figsize=(4.6, 0.45 * len(shown) + 1.3))
        axes.barh(names, allocated, color="#1565c0", label="allocated")
        axes.barh(names, unknown, left=allocated, color="#90a4ae", label="allocation unknown (capacity)")
        stacked = [a + u for a, u in zip(allocated, unknown, strict=True)]
        axes.barh(names, rest, left=stacked, color="#bbdefb", label="provisioned, not allocated")
        axes.set_xlabel(unit)
        axes.set_title(title, loc="left", fontsize=10)
        axes.legend(loc="upper center", bbox_to_anchor=(0.45, -0.35), ncol=2, fontsize=7, frameon=False)
        return _svg(figure)


def concerns_chart(groups: dict[Severity, list[ConcernGroup]], limit: int = 10) -> str:
    flat = sorted((g for gs in groups.values() for g in gs), key=lambda g: (-len(g.vms), g.id))[:limit]
    with plt.rc_context(_STYLE):
        figure, axes = plt.subplots(figsize=(4.6, 0.38 * max(1, len(flat)) + 0.9))
        if flat:
            flat = flat[::-1]
            axes.barh(
                [g.id for g in flat], [len(g.vms) for g in flat], color=[SEVERITY_COLOURS[g.severity] for g in flat]
            )
            axes.set_xlabel("VMs affected")
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        else:
            axes.text(0.5, 0.5, "no concerns", ha="center", va="center")
            axes.set_axis_off()
        axes.set_title("Most common concerns", loc="left", fontsize=10)
        return _svg(figure)


def largest_chart(data: ReportData) -> str:
    rows = data.largest[::-1]
    unit, size = _unit(max((r.estimate.transfer_seconds for r in rows), default=0.0), _TIME_UNITS)
    with plt.rc_context(_STYLE):
        figure, axes = plt.subplots(figsize=(4.6, 0.38 * max(1, len(rows)) + 0.9))
        axes.barh([r.name for r in rows], [r.estimate.transfer_seconds / size for r in rows], color="#6a1b9a")
        axes.set_xlim(left=0)
        axes.set_xlabel(f"estimated transfer time ({unit})")
        axes.set_title("Largest VMs", loc="left", fontsize=10)
        return _svg(figure)


def charts(data: ReportData) -> dict[str, str]:
    return {
        "readiness": readiness_chart(data),
        "storage_by_os": storage_chart(data.by_os, "Storage by OS family"),
        "storage_by_datastore": storage_chart(data.by_datastore, "Storage by datastore"),
        "concerns": concerns_chart(data.concerns),
        "largest": largest_chart(data),
    }
