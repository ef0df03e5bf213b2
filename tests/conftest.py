"""Shared fixtures: the real components the tests run against."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrator import simulator

PROJECT = Path(__file__).resolve().parent.parent
SHARED = PROJECT.parent / "shared"
SAMPLES_VMX = SHARED / "samples" / "vmx"
SAMPLES_OVF = SHARED / "samples" / "ovf"
KUBEVIRT_SWAGGER = SHARED / "kubevirt" / "swagger.json"

# A suite started in the background of a non-interactive shell (`make test &` in a script) inherits SIGINT
# ignored, and so would every command the Ctrl-C tests interrupt: they would run on as if no Ctrl-C came.
# With a handler here instead, the commands start with the default disposition (exec resets a handler, not an
# ignore), as from a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def tiny_guests_skip_conversion() -> Iterator[None]:
    """The suite's disks (the tiny busybox guest, sample VMDKs) hold no OS virt-v2v could inspect: convert and
    cutover skip guest conversion by default here (as `--skip-conversion`); tests/guest converts for real."""
    before = os.environ.get("MIGRATOR_SKIP_CONVERSION")
    os.environ["MIGRATOR_SKIP_CONVERSION"] = "1"
    yield
    if before is None:
        os.environ.pop("MIGRATOR_SKIP_CONVERSION", None)
    else:
        os.environ["MIGRATOR_SKIP_CONVERSION"] = before


@pytest.fixture(scope="session")
def vcsim() -> Iterator[simulator.Simulator]:
    """One vCenter simulator (TLS, self-signed) for the whole session. Tests must not depend on each other's changes."""
    sim = simulator.start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def fresh_vcsim() -> Iterator[simulator.Simulator]:
    """A simulator of the test's own, for tests that change the inventory (power, reconfigure, uploads)."""
    sim = simulator.start()
    try:
        yield sim
    finally:
        sim.stop()
