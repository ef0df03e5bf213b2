"""Plan → one self-contained HTML file (Jinja2 template, inline CSS and SVG charts)."""

from __future__ import annotations

from pathlib import Path

import jinja2

from core.atomic import write_atomically
from core.plan import Severity
from migrator.planning.table import human_bytes
from migrator.report.charts import charts
from migrator.report.figures import ReportData


def duration(seconds: float | None) -> str:
    """1h 05m, 12m 30s, 45s: how long, as a planner reads it."""
    if seconds is None:
        return "—"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours >= 48:
        return f"{hours / 24:.1f} days"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("migrator.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["bytes"] = human_bytes
    environment.filters["duration"] = duration
    return environment


def render_html(data: ReportData) -> str:
    template = _environment().get_template("report.html.j2")
    return template.render(data=data, charts=charts(data), Severity=Severity)


def write_report(data: ReportData, output: Path) -> Path:
    """Write atomically: a half-written report never replaces a good one."""
    # a report is meant to be shared (it holds no credentials): readable by others
    return write_atomically(output, render_html(data), "report", mode=0o644)
