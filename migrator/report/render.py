"""Plan → one self-contained HTML file (Jinja2 template, inline CSS and SVG charts)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import jinja2

from core.errors import InputError
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
    html = render_html(data)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=output.parent)
    except OSError as error:
        raise InputError(f"cannot write {output}: {error.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(html)
        os.chmod(tmp, 0o644)  # a report is meant to be shared (it holds no credentials)
        os.replace(tmp, output)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(f"cannot write {output}: {error.strerror}") from None
    return output
