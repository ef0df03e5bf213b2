"""Shared fixtures: the real components the tests run against."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from migrator import simulator

PROJECT = Path(__file__).resolve().parent.parent
SHARED = PROJECT.parent / "shared"
SAMPLES_VMX = SHARED / "samples" / "vmx"
SAMPLES_OVF = SHARED / "samples" / "ovf"
KUBEVIRT_SWAGGER = SHARED / "kubevirt" / "swagger.json"


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
