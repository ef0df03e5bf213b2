"""`migrator report`: the plan as one self-contained HTML assessment a project manager can read."""

from __future__ import annotations

from pathlib import Path

import click

from core.units import parse_rate
from migrator.planning.planfile import read_plan
from migrator.report.estimates import throughput_basis
from migrator.report.figures import report_data
from migrator.report.render import write_report


@click.command("report")
@click.option("--plan", "plan_file", required=True, metavar="FILE", help="The plan file `migrator plan` wrote.")
@click.option(
    "--output",
    "output",
    default="report.html",
    show_default=True,
    metavar="FILE",
    help="Where to write the HTML report.",
)
@click.option(
    "--throughput",
    metavar="RATE",
    help="Transfer rate for the estimates, e.g. 150MiB/s (default: the plan's measured rates, else an assumed one).",
)
def report(plan_file: str, output: str, throughput: str | None) -> None:
    """Write an HTML assessment of the plan: estate, readiness, concerns, waves, estimates.

    The file is self-contained (inline CSS and SVG charts, nothing fetched from the network),
    so it opens in any browser, from an email attachment too.

    \b
    Examples:
      migrator plan --source vsphere://admin@vcenter/DC1 --output-file plan.yaml
      migrator report --plan plan.yaml --output report.html
      migrator report --plan plan.yaml --throughput 150MiB/s
    """
    given = parse_rate(throughput, "--throughput") if throughput is not None else None
    plan = read_plan(plan_file)
    measured = {m.datastore: m.bytes_per_second for m in plan.throughput}
    data = report_data(plan, throughput_basis(given, measured))
    written = write_report(data, Path(output))
    totals = data.totals
    click.echo(
        f"wrote {written} ({totals.vms} VM(s): {totals.ready} ready, {totals.warnings} with warnings, "
        f"{totals.blocked} blocked)",
        err=True,
    )
