"""Disk images made by the real qemu-img/qemu-io, and helpers to run the engine's CLI."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
MiB = 1 << 20


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def qemu_io(path: Path, *commands: str, fmt: str = "vmdk") -> None:
    cmd = ["qemu-io", "-f", fmt]
    for c in commands:
        cmd += ["-c", c]
    subprocess.run([*cmd, str(path)], check=True, capture_output=True)


def make_vmdk(folder: Path, name: str, subformat: str, size: str = "64M") -> Path:
    path = folder / f"{name}.vmdk"
    qemu_img("create", "-f", "vmdk", "-o", f"subformat={subformat}", str(path), size)
    if subformat == "streamOptimized":
        # streamOptimized is append-only: write through a sparse twin and convert.
        twin = folder / f"{name}-twin.vmdk"
        qemu_img("create", "-f", "vmdk", str(twin), size)
        qemu_io(twin, "write -P 0xab 1M 4M", "write -P 0x11 40M 64k")
        path.unlink()
        qemu_img("convert", "-O", "vmdk", "-o", "subformat=streamOptimized", str(twin), str(path))
        twin.unlink()
    else:
        qemu_io(path, "write -P 0xab 1M 4M", "write -P 0x11 40M 64k")
    return path


def folder_digest(folder: Path) -> dict[str, str]:
    """Content hash of every file in a folder (the source must stay untouched)."""
    out = {}
    for p in sorted(folder.iterdir()):
        if p.is_file():
            h = hashlib.sha256()
            with open(p, "rb") as f:
                while chunk := f.read(MiB):
                    h.update(chunk)
            out[p.name] = h.hexdigest()
    return out


def same_image(a: Path, b: Path, fmt_b: str = "raw") -> bool:
    result = subprocess.run(["qemu-img", "compare", "-q", "-F", fmt_b, str(a), str(b)], capture_output=True)
    return result.returncode == 0


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, timeout: float = 120) -> CliResult:
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    proc = subprocess.run(
        [sys.executable, "-m", "converters.disks", *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(result: CliResult, *needles: str) -> None:
    assert result.returncode != 0, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def src_dir(tmp_path: Path) -> Path:
    d = tmp_path / "src"
    d.mkdir()
    return d


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d
