"""The password prompt on a terminal: Ctrl-D gives no password (bad input), Ctrl-C interrupts (exit 130)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

MIGRATOR = Path(sys.executable).parent / "migrator"


def _at_the_prompt(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`migrator plan` asking for a password, its stdin a terminal (a pty); nothing listens at the address."""
    controller, terminal = os.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIGRATOR_", "GOVC_"))}
    process = subprocess.Popen(
        [str(MIGRATOR), "plan", "--source", "vsphere://admin@127.0.0.1:1", "--insecure", "--output-file", "-"],
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**env, "HOME": str(tmp_path)},  # no ~/.govmomi or netrc answers for it
        cwd=tmp_path,
    )
    os.close(terminal)
    assert process.stderr is not None
    seen = b""
    deadline = time.monotonic() + 60
    while b"Password for" not in seen:
        assert time.monotonic() < deadline and process.poll() is None, seen
        seen += os.read(process.stderr.fileno(), 1024)
    time.sleep(0.3)  # into getpass's read
    return process, controller


def test_ctrl_c_at_the_password_prompt_is_an_interruption(tmp_path: Path) -> None:
    process, controller = _at_the_prompt(tmp_path)
    try:
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=30)
    finally:
        os.close(controller)
    assert process.returncode == 130, err
    lines = err.decode().strip().splitlines()
    assert lines[-1] == "error: interrupted at the password prompt", lines


def test_ctrl_d_at_the_password_prompt_gives_no_password(tmp_path: Path) -> None:
    process, controller = _at_the_prompt(tmp_path)
    try:
        os.write(controller, b"\x04")  # EOF on the terminal
        _out, err = process.communicate(timeout=30)
    finally:
        os.close(controller)
    assert process.returncode == 2, err
    assert err.decode().strip().splitlines()[-1].startswith("error: no password given for admin@127.0.0.1:1"), err
