"""`migrator plan --measure-throughput`: real reads through the disk engine, recorded in the plan, used by report."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from converters.disks import LocalSource
from converters.disks.sample import sample_read_rate
from migrator.planning.planfile import read_plan
from tests.planning.cli import assert_one_line_error, run_migrator

MIB = 2**20


def sparse_image(path: Path, size: int, data_at: list[int], chunk: int = 4 * MIB) -> Path:
    with path.open("wb") as handle:
        handle.truncate(size)
        for offset in data_at:
            handle.seek(offset)
            handle.write(b"\xa5" * chunk)
    return path


def test_sample_reads_only_data(tmp_path: Path) -> None:
    image = sparse_image(tmp_path / "disk.raw", 256 * MIB, [0, 100 * MIB, 200 * MIB])
    sample = sample_read_rate(LocalSource(image), seconds=10)
    assert sample.bytes_read == 12 * MIB  # the three data runs; holes are not read
    assert sample.seconds > 0 and sample.bytes_per_second > 0


def test_plan_measures_a_vmx_disk_and_report_uses_it(tmp_path: Path) -> None:
    raw = sparse_image(tmp_path / "flat.raw", 64 * MIB, [0, 32 * MIB], chunk=8 * MIB)
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=monolithicSparse", str(raw),
         str(tmp_path / "guest.vmdk")],
        check=True,
    )  # fmt: skip
    raw.unlink()
    (tmp_path / "guest.vmx").write_text(
        '.encoding = "UTF-8"\ndisplayName = "measured"\nguestOS = "debian12-64"\nmemsize = "512"\nnumvcpus = "1"\n'
        'scsi0.present = "TRUE"\nscsi0.virtualDev = "pvscsi"\nscsi0:0.present = "TRUE"\n'
        'scsi0:0.fileName = "guest.vmdk"\nethernet0.present = "FALSE"\n'
    )
    result = run_migrator(
        "plan", "--source", f"vmx:{tmp_path / 'guest.vmx'}", "--measure-throughput", "--measure-seconds", "1",
        "-o", "json", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode in (0, 3), result.stderr
    assert "throughput (local files):" in result.stderr
    (measured,) = json.loads(result.stdout)["throughput"]
    assert measured["datastore"] == "(local files)" and measured["sample_bytes"] == 16 * MIB
    assert measured["bytes_per_second"] > 0 and measured["disk"] == "measured / Hard disk 1"
    assert read_plan(tmp_path / "plan.yaml").throughput[0].sample_bytes == 16 * MIB
    report = run_migrator("report", "--plan", "plan.yaml", "--output", "r.html", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "measured by `migrator plan --measure-throughput`" in (tmp_path / "r.html").read_text().replace("&#96;", "`")


def test_measuring_an_inventory_export_is_refused(tmp_path: Path) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    book.active.title = "vInfo"
    book.active.append(["VM", "CPUs", "Memory"])
    book.active.append(["x", 1, 1024])
    book.save(tmp_path / "e.xlsx")
    result = run_migrator(
        "plan", "--source", f"rvtools:{tmp_path / 'e.xlsx'}", "--measure-throughput", "--output-file", "-", cwd=tmp_path
    )
    assert_one_line_error(result, "--measure-throughput needs a live source")
