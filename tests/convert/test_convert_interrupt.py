"""Acceptance (issue 16): SIGINT (and SIGTERM) to `migrator convert` during a 1 GiB transfer exits
within 2 s with the state recorded; a re-run resumes and ends with an image equal to the source."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from converters.disks import transfer_status
from tests.convert.helpers import MIB, MIGRATOR, PROJECT, images_equal, migrator, write_vmx

GiB = 1 << 30


def _one_gib_disk(folder: Path) -> Path:
    """A monolithicFlat VMDK (made by qemu-img) whose extent holds 1 GiB of non-zero data."""
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", str(folder / "big.vmdk"), "1G"],
        check=True,
    )
    block = os.urandom(64 * MIB)
    with open(folder / "big-flat.vmdk", "r+b") as f:
        for _ in range(GiB // len(block)):
            f.write(block)
    return folder / "big.vmdk"


@pytest.fixture(scope="module")
def big_vm(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(flat extent's descriptor, VMX): written once for both signals; convert only reads them."""
    folder = tmp_path_factory.mktemp("big")
    return _one_gib_disk(folder), write_vmx(folder / "big.vmx", "big", ["big.vmdk"])


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_the_transfer_and_a_rerun_resumes(signum: int, tmp_path: Path, big_vm: tuple[Path, Path]) -> None:
    disk, vmx = big_vm
    out = tmp_path / "out"
    image = out / "big-disk-0.img"
    args = ["convert", "--source", f"vmx:{vmx}", "--vm", "big", "--output-dir", str(out), "--progress", "none"]
    proc = subprocess.Popen(
        [str(MIGRATOR), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=PROJECT
    )
    try:
        deadline = time.monotonic() + 60
        while (status := transfer_status(image)) is None or status.chunks_done < 2:  # chunks recorded
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the transfer never started"
            time.sleep(0.01)
        proc.send_signal(signum)
        sent = time.monotonic()
        _out, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert elapsed < 2.0, f"took {elapsed:.2f} s to stop"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "interrupted" in lines[0] and "run again to resume" in lines[0], lines
    status = transfer_status(image)
    assert status is not None and not status.complete
    assert 0 < status.chunks_done < status.chunks_total  # stopped part-way, the copied chunks recorded

    again = migrator(*args)
    assert again.returncode == 0, again.stderr
    assert images_equal(disk, image)
    status = transfer_status(image)
    assert status is not None and status.complete
    assert status.bytes_transferred < GiB  # resumed: the chunks of the first run were not copied again
    third = migrator(*args[:-2], "--progress", "json")
    assert third.returncode == 0 and "already converted, skipped" in third.stderr
    assert not [line for line in third.stdout.splitlines() if json.loads(line).get("state") == "running"]
