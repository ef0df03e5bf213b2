"""RVTools exports as a source: workbooks built here with openpyxl, in 4.x and older column dialects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from core.inventory import ControllerKind, DiskMode, Firmware, PowerState
from migrator.sources import open_source
from migrator.sources.rvtools import as_bool, as_mib
from tests.planning.cli import assert_one_line_error, run_migrator

MIB, GIB = 2**20, 2**30

# RVTools 4.x headers (a subset of the real columns, in their real spelling and order)
VINFO_4X = [
    "VM", "Powerstate", "Template", "DNS Name", "Consolidation Needed", "CPUs", "Memory", "NICs", "Disks",
    "EnableUUID", "CBT", "Primary IP Address", "FT State", "Provisioned MiB", "In Use MiB", "EFI Secure boot",
    "Firmware", "HW version", "Annotation", "Datacenter", "Cluster", "Host", "Folder",
    "OS according to the configuration file", "OS according to the VMware Tools", "VM ID", "SMBIOS UUID", "VM UUID",
]  # fmt: skip
VDISK_4X = [
    "VM", "Powerstate", "Template", "Disk", "Disk Key", "Disk UUID", "Disk Path", "Capacity MiB", "Raw",
    "Disk Mode", "Sharing mode", "Thin", "Eagerly Scrub", "Controller", "Label", "Unit #", "Path",
]  # fmt: skip
VNETWORK_4X = [
    "VM", "Powerstate", "Template", "NIC label", "Adapter", "Network", "Switch", "Connected", "Starts Connected",
    "Mac Address", "Type", "IPv4 Address", "IPv6 Address",
]  # fmt: skip


def workbook(path: Path, sheets: dict[str, list[list[Any]]]) -> Path:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


def info_row(**values: Any) -> list[Any]:
    return [values.get(h) for h in VINFO_4X]


def estate_4x(path: Path) -> Path:
    web = info_row(
        VM="web01", Powerstate="poweredOn", Template="False", CPUs=4, Memory=8192, Disks=2, CBT="True",
        **{"Primary IP Address": "10.0.0.5", "Provisioned MiB": 61440, "In Use MiB": 30720, "DNS Name": "web01.corp",
           "Datacenter": "DC1", "Cluster": "Prod", "Host": "esx-01", "Folder": "prod/web", "Firmware": "efi",
           "EFI Secure boot": "Yes", "OS according to the configuration file": "Microsoft Windows Server 2019 (64-bit)",
           "VM ID": "vm-101", "VM UUID": "5012aaaa-0000-0000-0000-000000000001", "FT State": "notConfigured",
           "HW version": "vmx-19"},
    )  # fmt: skip
    db = info_row(
        VM="db01", Powerstate="poweredOff", Template=False, CPUs="2", Memory="16,384", CBT="No",
        **{"Provisioned MiB": "102 400", "In Use MiB": "0", "Datacenter": "DC1", "Cluster": "Prod", "Host": "esx-02",
           "OS according to the VMware Tools": "Red Hat Enterprise Linux 8 (64-bit)", "Consolidation Needed": "Yes",
           "VM ID": "vm-102"},
    )  # fmt: skip
    tmpl = info_row(VM="tmpl-rhel9", Powerstate="poweredOff", Template="True", CPUs=1, Memory=2048)
    disk = dict.fromkeys(VDISK_4X)

    def disk_row(**values: Any) -> list[Any]:
        return [values.get(h, disk[h]) for h in VDISK_4X]

    return workbook(
        path,
        {
            "vInfo": [VINFO_4X, web, db, tmpl, info_row(VM="Grand Total", CPUs=7, Memory=26624)],
            "vDisk": [
                VDISK_4X,
                disk_row(
                    VM="web01",
                    Disk="Hard disk 1",
                    Path="[ssd-01] web01/web01.vmdk",
                    **{"Capacity MiB": 40960},
                    Thin="True",
                    Controller="SCSI controller 0",
                    **{"Unit #": 0, "Disk Mode": "persistent"},
                ),
                disk_row(
                    VM="web01",
                    Disk="Hard disk 2",
                    Path="[sata-02] web01/web01_1.vmdk",
                    **{"Capacity MiB": "20,480", "Unit #": 1, "Disk Mode": "independent_persistent"},
                    Controller="SCSI controller 0",
                    Thin="False",
                ),
                disk_row(
                    VM="db01",
                    Disk="Hard disk 1",
                    Path="[ssd-01] db01/db01.vmdk",
                    Raw="No",
                    **{"Capacity MiB": "100 GiB", "Unit #": 0, "Sharing mode": "sharingMultiWriter"},
                    Controller="SATA controller 0",
                ),
                [None] * len(VDISK_4X),
            ],  # fmt: skip
            "vNetwork": [
                VNETWORK_4X,
                [
                    "web01",
                    "poweredOn",
                    "False",
                    "Network adapter 1",
                    "Vmxnet3",
                    "VM Network",
                    "vSwitch0",
                    "True",
                    "True",
                    "00:50:56:aa:bb:01",
                    "assigned",
                    "10.0.0.5, 10.0.0.6",
                    "",
                ],
                [
                    "db01",
                    "poweredOff",
                    "False",
                    "Network adapter 1",
                    "E1000E",
                    "Backup",
                    "dvs",
                    "False",
                    "True",
                    "00:50:56:AA:BB:02",
                    "assigned",
                    "",
                    "",
                ],
            ],  # fmt: skip
            "vSnapshot": [
                ["VM", "Powerstate", "Name", "Description", "Date / time"],
                ["db01", "poweredOff", "before-patch", "", "2026/11/01 10:00:00"],
            ],  # fmt: skip
            "vTools": [
                ["VM", "Powerstate", "Template", "Tools", "Tools Version"],
                ["web01", "poweredOn", "False", "toolsOk", 12352],
            ],
            "vCluster": [
                ["Name", "Config status", "HA enabled", "DRS enabled", "DRS default VM behavior", "DPM enabled"],
                ["Prod", "green", "True", "True", "FullyAutomated", "False"],
            ],  # fmt: skip
            "vHost": [["Host", "Datacenter", "Cluster"], ["esx-01", "DC1", "Prod"], ["esx-02", "DC1", "Prod"]],
            "vDatastore": [["Name", "Capacity MiB"], ["ssd-01", 1048576], ["sata-02", "2,097,152"]],
            "vCD": [
                ["VM", "Powerstate", "Template", "Device Node", "Connected", "Starts Connected", "Device Type"],
                ["web01", "poweredOn", "False", "IDE 1:0", "False", "False", "Client Device"],
            ],  # fmt: skip
        },
    )


def test_rvtools_4x_export_becomes_the_inventory(tmp_path: Path) -> None:
    inventory = open_source(f"rvtools:{estate_4x(tmp_path / 'estate.xlsx')}").inventory()
    vms = {vm.name: vm for vm in inventory.vms}
    assert sorted(vms) == ["db01", "tmpl-rhel9", "web01"]  # the grand-total row is not a VM
    web, db = vms["web01"], vms["db01"]
    assert web.source == "vsphere" and inventory.about["kind"] == "rvtools"
    assert (web.cpu.vcpus, web.memory_mib, web.power_state) == (4, 8192, PowerState.ON)
    assert web.firmware is Firmware.EFI and web.secure_boot and web.cbt_enabled is True
    assert (web.datacenter, web.host, web.folder, web.moref) == ("DC1", "esx-01", "/prod/web", "vm-101")
    assert web.cluster and web.cluster.drs_enabled and web.cluster.drs_behavior == "fullyAutomated"
    assert web.guest_name == "Microsoft Windows Server 2019 (64-bit)" and web.tools_status == "toolsOk"
    assert [d.capacity_bytes for d in web.disks] == [40 * GIB, 20 * GIB]
    assert [d.datastore for d in web.disks] == ["ssd-01", "sata-02"]
    assert web.disks[0].thin is True and web.disks[1].mode is DiskMode.INDEPENDENT_PERSISTENT
    # In Use MiB (30 GiB) shared by capacity over the disks
    assert [d.allocated_bytes for d in web.disks] == [20 * GIB, 10 * GIB]
    assert web.disks[0].controller.kind is ControllerKind.SCSI
    assert [(n.model, n.network, n.mac, n.ips) for n in web.nics] == [
        ("vmxnet3", "VM Network", "00:50:56:aa:bb:01", ["10.0.0.5", "10.0.0.6"])
    ]
    assert len(web.cdroms) == 1 and web.cdroms[0].controller.kind is ControllerKind.IDE
    assert (db.cpu.vcpus, db.memory_mib, db.cbt_enabled, db.consolidation_needed) == (2, 16384, False, True)
    assert db.disks[0].capacity_bytes == 100 * GIB and db.disks[0].allocated_bytes is None  # 0 In Use: unknown
    assert db.disks[0].controller.kind is ControllerKind.SATA and db.disks[0].sharing.value == "sharingMultiWriter"
    assert db.nics[0].connected is False and db.nics[0].model == "e1000e"
    assert [s.name for s in db.snapshots] == ["before-patch"]
    assert vms["tmpl-rhel9"].is_template


def test_plan_from_rvtools_plans_every_vm_and_applies_the_rules(tmp_path: Path) -> None:
    export = estate_4x(tmp_path / "estate.xlsx")
    result = run_migrator(
        "plan", "--source", f"rvtools:{export}", "--output-file", "plan.yaml", "-o", "json", cwd=tmp_path
    )
    assert result.returncode in (0, 3), result.stderr
    data = json.loads(result.stdout)
    planned = {v["source_name"]: v for v in data["vms"]}
    assert set(planned) == {"web01", "db01"}  # templates are not planned, as from a live vCenter
    ids = {name: {c["id"] for c in v["concerns"]} for name, v in planned.items()}
    assert "independent-disk" in ids["web01"] and "snapshots-present" in ids["db01"]
    assert "cbt-disabled" in ids["db01"] and "shared-disk" in ids["db01"]
    assert data["summary"]["vms"] == 2
    # the report works from it too
    report = run_migrator("report", "--plan", "plan.yaml", "--output", "r.html", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "web01" in (tmp_path / "r.html").read_text()
    # but convert needs a live source, and says so in one line
    convert = run_migrator("convert", "--plan", "plan.yaml", "--vm", "web01", "--output-dir", "out", cwd=tmp_path)
    assert_one_line_error(convert, "inventory export", "live source")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*.img"))


def test_older_rvtools_column_names(tmp_path: Path) -> None:
    """RVTools 3.x: "MB" where 4.x says "MiB", "OS" for the configured guest OS, a title row above the header."""
    export = workbook(
        tmp_path / "old.xlsx",
        {
            "vInfo": [
                ["RVTools export of vcenter01"],
                ["VM", "Powerstate", "CPUs", "Memory", "Provisioned MB", "In Use MB", "OS", "Host", "Cluster"],
                ["legacy01", "poweredOn", 2, "4096", "51200", "10240 MB", "CentOS 7 (64-bit)", "esx-9", ""],
                [None, None, None, None, None, None, None, None, None],
                ["Total", None, 2, 4096, None, None, None, None, None],
            ],
            "vDisk": [
                ["VM", "Disk", "Capacity MB", "Path", "Thin", "Controller", "Unit #"],
                ["legacy01", "Hard disk 1", 51200, "[old-ds] legacy01/legacy01.vmdk", "Yes", "SCSI controller 0", 0],
            ],
            "vNetwork": [
                ["VM", "NIC label", "Adapter", "Network", "Connected", "Mac Address"],
                ["legacy01", "Network adapter 1", "Flexible", "VM Network", "Yes", "00:0c:29:00:00:01"],
            ],
        },
    )
    (vm,) = open_source(f"rvtools:{export}").inventory().vms
    assert (vm.name, vm.cpu.vcpus, vm.memory_mib, vm.guest_name) == ("legacy01", 2, 4096, "CentOS 7 (64-bit)")
    assert vm.cluster is None and vm.host == "esx-9"
    (disk,) = vm.disks
    assert disk.capacity_bytes == 50 * GIB and disk.allocated_bytes == 10 * GIB and disk.datastore == "old-ds"
    assert vm.nics[0].model == "pcnet32"


def test_only_vinfo_is_required(tmp_path: Path) -> None:
    export = workbook(tmp_path / "min.xlsx", {"vInfo": [["VM", "CPUs", "Memory"], ["solo", 1, 1024]]})
    (vm,) = open_source(f"rvtools:{export}").inventory().vms
    assert vm.name == "solo" and vm.disks == [] and vm.nics == []


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda p: p.write_bytes(b"not a zip at all"), "not an Excel workbook"),
        (lambda p: workbook(p, {"vHost": [["Host"], ["esx"]]}), "no vInfo sheet"),
        (lambda p: workbook(p, {"vInfo": [["Name of thing", "CPUs"], ["x", 1]]}), "no 'VM' column"),
    ],
)
def test_bad_exports_are_one_line(tmp_path: Path, make, says: str) -> None:
    path = tmp_path / "bad.xlsx"
    make(path)
    result = run_migrator("plan", "--source", f"rvtools:{path}", "--output-file", "-", cwd=tmp_path)
    assert_one_line_error(result, says)
    missing = run_migrator("plan", "--source", f"rvtools:{tmp_path / 'none.xlsx'}", "--output-file", "-", cwd=tmp_path)
    assert_one_line_error(missing, "does not exist")


def test_messy_values() -> None:
    assert [as_bool(v) for v in ("Yes", "no", "TRUE", "False", 1, 0, None, "", "maybe")] == [
        True, False, True, False, True, False, None, None, None,
    ]  # fmt: skip
    assert as_mib("4,096") == 4096 and as_mib("4 096 MiB") == 4096 and as_mib("2 GiB") == 2048
    assert as_mib(1536.0) == 1536 and as_mib("") is None and as_mib("n/a") is None and as_mib(None) is None


def test_a_workbook_is_read_by_its_content_not_its_name(tmp_path: Path) -> None:
    """A renamed export still plans; a file that is no workbook, whatever its suffix, is one line and exit 2."""
    export = workbook(tmp_path / "export.xlsx", {"vInfo": [["VM", "CPUs", "Memory"], ["solo", 1, 1024]]})
    renamed = export.rename(tmp_path / "export.xlsx.bak")
    planned = run_migrator("plan", "--source", f"rvtools:{renamed}", "-o", "name", "--output-file", "-", cwd=tmp_path)
    assert planned.returncode == 0 and planned.stdout.split() == ["solo"], planned.stderr
    not_a_workbook = tmp_path / "plan.yaml"
    not_a_workbook.write_text("apiVersion: migrator/v1\nkind: Plan\n")
    result = run_migrator("plan", "--source", f"rvtools:{not_a_workbook}", "--output-file", "-", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert_one_line_error(result, "is not an Excel workbook")
