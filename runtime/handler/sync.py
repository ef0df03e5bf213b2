"""Pure: the instance status a launcher's answer implies, and the pause/unpause it needs."""

from __future__ import annotations

from typing import Any

from runtime.controller.names import ANNOTATION_PAUSE
from runtime.launcher.contract import ALIVE, Phase
from runtime.launcher.contract import FINAL as LAUNCHER_FINAL

FINAL = tuple(str(phase) for phase in LAUNCHER_FINAL)
ACCELERATED = "HardwareAccelerated"  # condition: True under KVM; its message is the probe's reason


def _condition(kind: str, true: bool, reason: str = "", message: str = "") -> dict[str, Any]:
    return {"type": kind, "status": "True" if true else "False", "reason": reason, "message": message}


def status_from_launcher(
    vmi: dict[str, Any], launcher: dict[str, Any] | None, result: dict[str, Any] | None, lost: bool
) -> dict[str, Any]:
    """Status changes for ``vmi`` ({} when none).

    ``launcher``: its ``GET /status`` answer, None when it does not answer; ``result``: its ``result.json``
    after exit; ``lost``: it answered before (or the instance was Running) and now neither answers nor
    left a result — the launcher died.
    """
    current = vmi.get("status") or {}
    phase = current.get("phase") or ""
    if phase in FINAL or (vmi.get("metadata") or {}).get("deletionTimestamp"):
        return {}
    wanted: dict[str, Any] = {}
    if launcher is not None and launcher.get("phase") in ALIVE:
        paused = launcher.get("phase") == Phase.PAUSED
        wanted["phase"] = "Running"
        wanted["interfaces"] = [
            {"name": i.get("name"), "mac": i.get("mac"), "infoSource": "domain"}
            for i in launcher.get("interfaces") or []
        ]
        conditions = [
            _condition("Ready", not paused, "" if not paused else "PausedByUser"),
            _condition("Paused", paused, "PausedByUser" if paused else "", "VMI was paused by user" if paused else ""),
        ]
        wanted["conditions"] = conditions if paused else conditions[:1]
        accel = launcher.get("accelerator") or {}
        if accel.get("kind"):
            wanted["machine"] = {"type": "kvm" if accel["kind"] == "kvm" else "tcg"}
            # what the launcher's probe found, and why: a VM on TCG runs 10-50x slower, never silently
            kvm = accel["kind"] == "kvm"
            wanted["conditions"].append(
                _condition(ACCELERATED, kvm, "KVM" if kvm else "TCG", str(accel.get("reason") or ""))
            )
    elif launcher is not None and launcher.get("phase") in FINAL:
        wanted = _final(launcher.get("phase"), launcher.get("reason"))
    elif result is not None:
        wanted = _final(result.get("phase"), result.get("reason"))
    elif lost:
        wanted = _final("Failed", "LauncherGone")
    else:
        return {}
    return {k: v for k, v in wanted.items() if _differs(current, k, v)}


def _differs(current: dict[str, Any], key: str, value: Any) -> bool:
    if key == "conditions":
        strip = [{k: c.get(k) for k in ("type", "status", "reason")} for c in current.get("conditions") or []]
        return strip != [{k: c.get(k) for k in ("type", "status", "reason")} for c in value]
    return bool(current.get(key) != value)


def _final(phase: Any, reason: Any) -> dict[str, Any]:
    phase = phase if phase in FINAL else "Failed"
    return {
        "phase": phase,
        "reason": str(reason or phase),
        "conditions": [_condition("Ready", False, str(reason or phase))],
    }


def pause_action(vmi: dict[str, Any], launcher: dict[str, Any] | None) -> str | None:
    """``/pause``, ``/unpause`` or None, from the instance's ``migrator.io/paused`` annotation."""
    if launcher is None:
        return None
    wanted = ((vmi.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_PAUSE) == "true"
    if wanted and launcher.get("phase") == Phase.RUNNING:
        return "/pause"
    if not wanted and launcher.get("phase") == Phase.PAUSED:
        return "/unpause"
    return None
