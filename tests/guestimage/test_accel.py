"""The accelerator probe: KVM only when a boot loader's code runs under it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import runtime.accel as accel_module
from core.errors import InputError
from runtime.accel import PROBE_MARKER, Accel, boot_sector, probe_accelerator

PROJECT = Path(__file__).resolve().parents[2]


def test_probe_answers_kvm_or_tcg_with_a_reason_and_caches_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MIGRATOR_ACCEL", raising=False)
    accel = probe_accelerator()
    assert isinstance(accel, Accel)
    assert accel.kind in ("kvm", "tcg")
    assert accel.reason
    again = probe_accelerator()
    assert again.kind == accel.kind
    assert "probed earlier this boot" in again.reason


@pytest.mark.parametrize("kind", ["kvm", "tcg"])
def test_environment_forces_the_accelerator(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    monkeypatch.setenv("MIGRATOR_ACCEL", kind)
    accel = probe_accelerator()
    assert accel == Accel(kind, f"forced by MIGRATOR_ACCEL={kind}")


def test_argument_forces_the_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIGRATOR_ACCEL", "kvm")
    assert probe_accelerator("tcg").kind == "tcg"


def test_unknown_forced_accelerator_is_an_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIGRATOR_ACCEL", "hvf")
    with pytest.raises(InputError, match="unknown accelerator 'hvf'"):
        probe_accelerator()


PARAVIRTUAL_KVM = Path("/sys/module/kvm_pvm").exists()
# Imports that the runtime's image does not have: the probe must not need them.
BLOCK_TEST_PACKAGES = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("migrator", "testbed", "tests", "converters"):
            raise ImportError("not in the runtime image: " + name)
sys.meta_path.insert(0, Block())
import runtime.accel
sys.exit(runtime.accel.main(["--fresh"]))
"""


def test_boot_sector_is_valid_code_that_prints_the_marker_under_tcg(tmp_path: Path) -> None:
    """The probe's boot sector, under QEMU's emulator: protected mode, iretd, the marker, exit through the port."""
    sector = boot_sector()
    assert len(sector) == 512 and sector.endswith(b"\x55\xaa")
    disk = tmp_path / "probe.img"
    disk.write_bytes(sector)
    done = subprocess.run(
        [
            *("qemu-system-x86_64", "-accel", "tcg", "-machine", "pc", "-m", "16", "-nodefaults", "-display", "none"),
            *("-monitor", "none", "-no-reboot", "-serial", "stdio"),
            *("-device", "isa-debug-exit,iobase=0xf4,iosize=1", "-drive", f"file={disk},format=raw,if=ide"),
        ],
        capture_output=True,
        timeout=60,
    )
    assert PROBE_MARKER in done.stdout
    assert done.returncode == 1  # isa-debug-exit with 0: (0 << 1) | 1


def test_probe_cli_answers_fast_without_the_projects_test_packages(tmp_path: Path) -> None:
    """`python -m runtime.accel --fresh` with migrator/testbed/tests unimportable, as in the image; no cache."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "PYTHONPATH": str(PROJECT)}
    env.pop("MIGRATOR_ACCEL", None)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_TEST_PACKAGES], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=30
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    kind, _, reason = done.stdout.strip().partition(": ")
    assert kind in ("kvm", "tcg") and reason
    assert elapsed < 10
    if PARAVIRTUAL_KVM:  # this machine: a paravirtual KVM whose emulator fails a boot loader's iretd
        assert kind == "tcg"
        assert "KVM internal error" in reason


def test_without_dev_kvm_access_the_probe_says_tcg_and_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accel_module.os, "access", lambda *_: False)
    assert accel_module.probe_kvm() == Accel("tcg", "/dev/kvm is not accessible to this user")


def test_the_answer_is_kept_where_the_node_shares_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A launcher pod sets MIGRATOR_ACCEL_CACHE_DIR to the node's hostPath: one probe per node boot."""
    monkeypatch.delenv("MIGRATOR_ACCEL", raising=False)
    monkeypatch.setenv("MIGRATOR_ACCEL_CACHE_DIR", str(tmp_path / "node"))
    first = probe_accelerator()
    (kept,) = (tmp_path / "node").glob("*.json")
    assert Path("/proc/sys/kernel/random/boot_id").read_text().strip() in kept.name
    assert probe_accelerator().reason == f"{first.reason} (probed earlier this boot)"
