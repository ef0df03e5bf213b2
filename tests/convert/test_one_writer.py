"""One writer per target (issue 12): a second `migrator convert` of a VM while one runs is refused.

Two real processes: the first is stopped (SIGSTOP) once it holds the VM's lock and is writing
the image, so the second surely runs while the first is alive; then the first resumes and
finishes with an image equal to the source, and nothing is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from core.wait import wait_until
from tests.convert.helpers import MIGRATOR, PROJECT, images_equal, make_vmdk, migrator, write_vmx


def test_second_convert_into_the_same_output_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "vm"
    folder.mkdir()
    vmdk = make_vmdk(folder / "web.vmdk", "64M", 0x6B)
    vmx = write_vmx(folder / "web.vmx", "web", ["web.vmdk"])
    out = tmp_path / "out"
    env = {**os.environ, "MIGRATOR_STATE_DIR": str(tmp_path / "state")}
    args = [str(MIGRATOR), "convert", "--source", f"vmx:{vmx}", "--vm", "web", "--output-dir", str(out)]
    first = subprocess.Popen(
        [*args, "--format", "qcow2"], env=env, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:

        def writing() -> bool:  # the engine's record exists: it writes now
            return bool(list(out.glob(".*.transfer"))) or first.poll() is not None

        assert wait_until(writing, timeout=60, interval=0.005), "the first convert never started writing"
        os.kill(first.pid, signal.SIGSTOP)
        try:
            second = migrator(*args[1:], env={"MIGRATOR_STATE_DIR": str(tmp_path / "state")})
        finally:
            os.kill(first.pid, signal.SIGCONT)
        lines = second.stderr.strip().splitlines()
        assert second.returncode == 2 and len(lines) == 1, second.stderr
        assert lines[0].startswith("error: another convert or cutover of web is running"), lines[0]
        _, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
    assert images_equal(vmdk, out / "web-disk-0.qcow2")
    assert (out / "web-disk-0.qcow2").stat().st_mode & 0o077 == 0  # qemu-img made it: narrowed to 0600
    leftovers = [p.name for p in out.iterdir() if p.name.endswith((".part.raw", ".tmp"))]
    assert leftovers == []
    # once the first is done, the VM is free again
    assert migrator(*args[1:], env={"MIGRATOR_STATE_DIR": str(tmp_path / "state")}).returncode == 0
