"""A vSphere session idle too long ends (vCenter's default: 30 minutes; warm rounds are an hour apart): against
a real vcsim that ends idle sessions, a keep-alive keeps one, and an ended one is one clear SourceError."""

from __future__ import annotations

import time

import pytest

from core.errors import SourceError
from migrator import simulator
from migrator.sources import SourceOptions, open_source
from migrator.sources.vsphere import VSphereSource

ENV = "MIGRATOR_TEST_VSPHERE_PASSWORD"
IDLE_TIMEOUT = 1.0  # seconds: the simulator's session idle timeout here


def test_an_idle_session_ends_and_a_kept_one_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    with simulator.start(session_idle_timeout=IDLE_TIMEOUT) as sim:
        monkeypatch.setenv(ENV, sim.password)
        options = SourceOptions(insecure=True, password_env=ENV, prompt=False)
        kept = open_source(sim.source_url(), options)
        idle = open_source(sim.source_url(), options)
        assert isinstance(kept, VSphereSource) and isinstance(idle, VSphereSource)
        try:
            # the simulator looks once per timeout and ends a session idle longer: 3 timeouts are enough
            deadline = time.monotonic() + 3 * IDLE_TIMEOUT + 0.5
            while time.monotonic() < deadline:
                kept.keep_alive()
                time.sleep(IDLE_TIMEOUT / 4)
            kept.keep_alive()
            assert kept.find_vm("DC0_H0_VM0").name == "DC0_H0_VM0"  # the session still works for real calls
            with pytest.raises(SourceError) as ended:
                idle.keep_alive()
            assert str(ended.value) == (
                f"the session on {idle.location.endpoint} has ended (it was idle longer than the server allows): "
                "re-run to resume"
            )
        finally:
            kept.close()
            idle.close()
