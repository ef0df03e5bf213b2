"""The accelerator probe: KVM only when a real-mode guest boots under it."""

from __future__ import annotations

import pytest

from core.errors import InputError
from runtime.accel import Accel, probe_accelerator


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
