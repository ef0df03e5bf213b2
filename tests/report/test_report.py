"""`migrator report`: the plan as one self-contained HTML file, checked in a real browser."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest

from core.plan import Plan
from migrator.planning.planfile import read_plan
from migrator.planning.summary import totals
from migrator.report.estimates import BOOT_SECONDS, DEFAULT_THROUGHPUT, throughput_basis
from migrator.report.figures import os_family, report_data
from migrator.report.render import duration, render_html
from tests.planning.cli import assert_one_line_error, run_migrator
from tests.report import chromium

MIB, GIB = 2**20, 2**30
# What the page itself says, read from its DOM: the figures a person sees.
PAGE_VALUES = {
    "vms": "document.querySelector('[data-total=vms]').textContent.trim()",
    "vcpus": "document.querySelector('[data-total=vcpus]').textContent.trim()",
    "allocated_bytes": "document.querySelector('[data-total=allocated]').dataset.bytes",
    "allocated_text": "document.querySelector('[data-total=allocated]').textContent.trim()",
    "provisioned_bytes": "document.querySelector('[data-total=provisioned]').dataset.bytes",
    "transfer_bytes": "document.querySelector('[data-total=transfer]').dataset.bytes",
    "ready": "document.querySelector('[data-total=ready]').textContent.trim()",
    "blocked": "document.querySelector('[data-total=blocked]').textContent.trim()",
    "vm_rows": "document.querySelectorAll('tr[data-vm]').length",
    "charts": "document.querySelectorAll('.chart svg').length",
    "width": "document.documentElement.scrollWidth",
}


@pytest.fixture(scope="module")
def simulator_plan(vcsim, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The acceptance's plan: `migrator plan --source vsphere://… --insecure` against the simulator."""
    work = tmp_path_factory.mktemp("report")
    env = {"MIGRATOR_VSPHERE_PASSWORD": vcsim.password}
    result = run_migrator("plan", "--source", vcsim.source_url(), "--insecure", "-o", "json", cwd=work, env=env)
    assert result.returncode in (0, 3), result.stderr
    return work / "plan.yaml", json.loads(result.stdout)


def test_report_from_the_simulator_renders_in_chromium(simulator_plan, tmp_path: Path) -> None:
    plan_file, plan_json = simulator_plan
    output = tmp_path / "report.html"
    result = run_migrator("report", "--plan", str(plan_file), "--output", str(output), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    html = output.read_text()
    # self-contained: not one URL to load (no CDN, no fonts, no images from anywhere)
    assert not re.search(r"https?://", html), re.search(r".{40}https?://.{40}", html)
    assert "<script" not in html and "<link" not in html and "@import" not in html

    page = chromium.visit(output.as_uri(), PAGE_VALUES)
    assert page.exceptions == [] and page.errors == [], (page.exceptions, page.console)
    assert page.failed == []
    assert [url for url in page.requests if url != output.as_uri()] == []  # no network request at all
    assert page.screenshot.startswith(b"\x89PNG")
    width, height = struct.unpack(">II", page.screenshot[16:24])
    assert width >= 1000 and height > 1500
    (tmp_path / "report.png").write_bytes(page.screenshot)

    # the page's figures are the plan's: against `plan -o json`'s summary, and summed afresh from its VMs
    summary = plan_json["summary"]
    vms = plan_json["vms"]
    assert page.values["vms"] == str(summary["vms"]) == str(len(vms))
    assert page.values["vcpus"] == str(summary["vcpus"])
    allocated = sum(d["allocated_bytes"] or 0 for vm in vms for d in vm["vm"]["disks"])
    assert int(page.values["allocated_bytes"]) == summary["allocated_bytes"] == allocated
    assert int(page.values["provisioned_bytes"]) == summary["provisioned_bytes"]
    assert (
        int(page.values["transfer_bytes"])
        == summary["transfer_bytes"]
        == sum(d["transfer_bytes"] for vm in vms for d in vm["disks"])
    )
    assert page.values["ready"] == str(summary["ready"]) and page.values["blocked"] == str(summary["blocked"])
    assert page.values["vm_rows"] == len(vms)
    assert page.values["charts"] == 5
    assert page.values["width"] <= 1300  # nothing runs off the side of the page


def _plan(tmp_path: Path, **vm_overrides) -> Plan:
    """A plan from the real OVF sample of a two-VM vApp, through the real CLI."""
    from tests.conftest import SAMPLES_OVF

    sample = SAMPLES_OVF / "Alpha-demo__vApp_with_2vms__vApp_with_2vms.ovf"
    result = run_migrator("plan", "--source", f"ovf:{sample}", "--output-file", "plan.yaml", cwd=tmp_path)
    assert result.returncode in (0, 3), result.stderr
    return read_plan(tmp_path / "plan.yaml")


def test_figures_breakdowns_and_estimates(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    first, second = plan.vms
    first.vm.guest_id, second.vm.guest_id = "windows2019srv_64Guest", "rhel8_64Guest"
    first.vm.host = second.vm.host = "esx-01"
    for disk in first.disks:
        disk.transfer_bytes, disk.datastore = 150 * MIB * 60, "fast"  # one hour at 150 MiB/s
    first.vm.cbt_enabled = False
    data = report_data(plan, throughput_basis(150 * MIB, {}))
    assert {row.name for row in data.by_os} == {"Windows", "Linux"}
    assert [(row.name, row.vms) for row in data.by_host] == [("esx-01", 2)]
    estimate = {row.name: row.estimate for row in data.vms}[first.source_name]
    assert estimate.transfer_seconds == pytest.approx(60.0 * len(first.disks))
    assert estimate.cold_downtime_seconds == pytest.approx(estimate.transfer_seconds + BOOT_SECONDS)
    assert estimate.warm_downtime_seconds is None and "cbt" in estimate.warm_note  # warm needs CBT
    assert data.basis.basis == "given" and "150 MiB/s" in data.basis.detail
    assert data.total.transfer_bytes == sum(v.transfer_bytes for v in plan.vms)
    assert data.largest[0].name == first.source_name
    # measured rates win over the assumption, per datastore; the slowest covers the others
    measured = throughput_basis(None, {"fast": 300 * MIB, "slow": 30 * MIB})
    assert measured.basis == "measured" and measured.rate_for("fast") == 300 * MIB
    assert measured.rate_for("elsewhere") == 30 * MIB
    assumed = throughput_basis(None, {})
    assert assumed.basis == "assumed" and assumed.bytes_per_second == DEFAULT_THROUGHPUT
    assert "--measure-throughput" in assumed.detail


def test_unknown_allocation_is_an_upper_bound_not_zero(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    for planned in plan.vms:
        for disk in planned.vm.disks:
            disk.allocated_bytes = None
    figures = totals(plan)
    assert figures.allocated_bytes == 0
    assert figures.unknown_allocation_disks == figures.disks > 0
    assert figures.unknown_allocation_bytes == figures.provisioned_bytes
    data = report_data(plan, throughput_basis(None, {}))
    assert all(row.allocation_unknown for row in data.vms)


def test_concerns_grouped_with_what_to_do(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    data = report_data(plan, throughput_basis(None, {}))
    groups = [g for gs in data.concerns.values() for g in gs]
    assert groups, "the sample plans with concerns"
    for group in groups:
        assert group.remedy, group.id  # every rule says what to do
        assert set(group.vms) <= {v.source_name for v in plan.vms}


def test_os_family() -> None:
    from core.inventory import VM, Cpu

    def vm(guest_id=None, guest_name=None) -> VM:
        return VM(name="x", source="vsphere", cpu=Cpu(1, 1), memory_mib=1, guest_id=guest_id, guest_name=guest_name)

    assert os_family(vm("windows9Server64Guest")) == "Windows"
    assert os_family(vm(None, "Microsoft Windows Server 2019 (64-bit)")) == "Windows"
    assert os_family(vm("ubuntu64Guest")) == "Linux"
    assert os_family(vm("freebsd12_64Guest")) == "Other"
    assert os_family(vm()) == "Unknown"


def test_duration_reads_as_a_planner_reads_it() -> None:
    assert duration(45) == "45s"
    assert duration(750) == "12m 30s"
    assert duration(3900) == "1h 05m"
    assert duration(3 * 86400) == "3.0 days"
    assert duration(None) == "—"


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    assert plan.vms
    missing = run_migrator("report", "--plan", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert_one_line_error(missing, "does not exist")
    rate = run_migrator("report", "--plan", "plan.yaml", "--throughput", "fast", cwd=tmp_path)
    assert_one_line_error(rate, "--throughput", "not a rate")
    (tmp_path / "file").write_text("x")
    nowhere = run_migrator("report", "--plan", "plan.yaml", "--output", str(tmp_path / "file" / "r.html"), cwd=tmp_path)
    assert_one_line_error(nowhere, "cannot write")


def test_waves_in_order_with_their_estimates(tmp_path: Path) -> None:
    from core.plan import CutoverWindow, Wave

    plan = _plan(tmp_path)
    first, second = plan.vms
    for disk in first.disks:
        disk.transfer_bytes = 100 * MIB
    plan.waves = [
        Wave(name="pilot", vms=[second.source_name], window=CutoverWindow(start="2026-12-05T20:00:00+00:00")),
        Wave(name="main", vms=[first.source_name, second.source_name]),  # a VM is in its first wave only
    ]
    data = report_data(plan, throughput_basis(100 * MIB, {}))
    assert [(w.name, [r.name for r in rows]) for w, rows in data.waves] == [
        ("pilot (window 2026-12-05T20:00:00+00:00 – …)", [second.source_name]),
        ("main", [first.source_name]),
    ]
    main_wave = data.waves[1][0]
    assert main_wave.transfer_seconds == pytest.approx(len(first.disks) * 1.0)
    html = render_html(data)
    assert "pilot (window 2026-12-05T20:00:00+00:00" in html and "all VMs (the plan names no waves)" not in html
