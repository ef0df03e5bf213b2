"""`migrator cutover --vm X --now` from another shell (``request_cutover``), on a real state store: it records the
request once for a warm run under way, and says in one line why it cannot otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import InputError, NotFoundError
from migrator.cutover.precopy import CUTOVER_REQUESTED, WARM
from migrator.cutover.state import StateStore
from migrator.cutover.warm import request_cutover


def test_a_request_is_recorded_once_for_a_warm_run_under_way(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    try:
        with pytest.raises(NotFoundError) as unknown:
            request_cutover(store, "web01")
        assert "no warm cutover of web01 recorded" in str(unknown.value)
        assert "a VM that a running `migrate` has not started yet" in str(unknown.value)
        assert "migrator status --vm web01" in str(unknown.value)
        store.begin("web01", plan="p", source="vsphere://u@vc", target="local:/out")
        with pytest.raises(NotFoundError):  # a cold run: nothing to cut over early
            request_cutover(store, "web01")
        store.set_fact("web01", WARM, {"interval": 3600})
        assert request_cutover(store, "web01").startswith("cutover of web01 requested")
        first = store.fact("web01", CUTOVER_REQUESTED)
        assert first is not None
        request_cutover(store, "web01")
        assert store.fact("web01", CUTOVER_REQUESTED) == first  # asked twice: the first request stands
        store.step_started("web01", "precopy")
        store.step_done("web01", "precopy")
        assert request_cutover(store, "web01") == "the warm cutover of web01 is already past its precopy rounds"
        store.set_status("web01", "completed")
        with pytest.raises(InputError, match="the warm cutover of web01 is completed: nothing to cut over"):
            request_cutover(store, "web01")
    finally:
        store.close()
