"""Features and clock: ACPI, APIC, SMM, Hyper-V enlightenments, KVM hiding; the clock's offset and timers
(KubeVirt's converter: features, clock)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from runtime.domain.elements import sub, unknown
from runtime.domain.model import UnsupportedSpecError

# KubeVirt's spec.domain.features.hyperv fields → libvirt's <hyperv> elements (the names differ for vendor_id)
HYPERV_FEATURES = {
    "relaxed": "relaxed",
    "vapic": "vapic",
    "spinlocks": "spinlocks",
    "vpindex": "vpindex",
    "runtime": "runtime",
    "synic": "synic",
    "stimer": "stimer",
    "reset": "reset",
    "vendorid": "vendor_id",
    "frequencies": "frequencies",
    "reenlightenment": "reenlightenment",
    "tlbflush": "tlbflush",
    "ipi": "ipi",
    "evmcs": "evmcs",
}
# KubeVirt's spec.domain.clock.timer names → libvirt's <timer name=...> (kvm and hyperv are paravirtual clocks)
TIMERS = {"hpet": "hpet", "pit": "pit", "rtc": "rtc", "kvm": "kvmclock", "hyperv": "hypervclock"}
TICK_POLICIES = {"delay", "catchup", "merge", "discard"}


def features(root: ET.Element, spec: Mapping[str, Any], secure_boot: bool) -> None:
    """``spec.domain.features``."""
    unknown(spec, {"acpi", "apic", "smm", "hyperv", "pvspinlock", "kvm"}, "spec.domain.features")
    element = sub(root, "features")
    # KubeVirt enables ACPI unless the feature is present and disabled; a guest needs it for ACPI shutdown
    if (spec.get("acpi") or {}).get("enabled", True):
        sub(element, "acpi")
    if (spec.get("apic") or {}).get("enabled", True):
        sub(element, "apic")
    smm = spec.get("smm")
    if secure_boot and smm is not None and not smm.get("enabled", True):
        raise UnsupportedSpecError("spec.domain.features.smm", "secure boot needs SMM")
    if secure_boot or (smm is not None and smm.get("enabled", True)):
        sub(element, "smm", state="on")
    hyperv = spec.get("hyperv")
    if hyperv:
        hv = sub(element, "hyperv", mode="custom")
        for name, value in hyperv.items():
            path = f"spec.domain.features.hyperv.{name}"
            if name not in HYPERV_FEATURES:
                raise UnsupportedSpecError(path, "not supported by this runtime")
            value = value or {}
            state = "on" if value.get("enabled", True) else "off"
            item = sub(hv, HYPERV_FEATURES[name], state=state)
            if name == "spinlocks" and state == "on":
                item.set("retries", str(value.get("spinlocks", 4096)))
            if name == "vendorid" and state == "on":
                item.set("value", str(value.get("vendorid", "KubeVirt")))
            direct = value.get("direct")
            if name == "stimer" and state == "on" and direct is not None:  # KubeVirt: enabled unless false
                sub(item, "direct", state="on" if (direct or {}).get("enabled", True) else "off")
    if spec.get("pvspinlock") is not None:
        state = "on" if (spec["pvspinlock"] or {}).get("enabled", True) else "off"
        sub(element, "pvspinlock", state=state)
    if (spec.get("kvm") or {}).get("hidden"):
        kvm = sub(element, "kvm")
        sub(kvm, "hidden", state="on")


def clock(root: ET.Element, spec: Mapping[str, Any]) -> None:
    """``spec.domain.clock``: UTC (with an offset) or a timezone, and the timers."""
    unknown(spec, {"utc", "timezone", "timer"}, "spec.domain.clock")
    if spec.get("timezone"):
        element = sub(root, "clock", offset="timezone", timezone=str(spec["timezone"]))
    else:
        element = sub(root, "clock", offset="utc")
        offset = (spec.get("utc") or {}).get("offsetSeconds")
        if offset:
            element.set("offset", "variable")
            element.set("adjustment", str(int(offset)))
            element.set("basis", "utc")
    for name, timer in (spec.get("timer") or {}).items():
        path = f"spec.domain.clock.timer.{name}"
        if name not in TIMERS:
            raise UnsupportedSpecError(path, "unknown timer")
        timer = timer or {}
        unknown(timer, {"present", "tickPolicy", "track"}, path)
        attrs = {"name": TIMERS[name], "present": "yes" if timer.get("present", True) else "no"}
        policy = timer.get("tickPolicy")
        if policy:
            if name in ("kvm", "hyperv") or policy not in TICK_POLICIES:
                raise UnsupportedSpecError(f"{path}.tickPolicy", f"{policy!r} is not a tick policy of this timer")
            attrs["tickpolicy"] = policy
        if timer.get("track"):
            if name != "rtc" or timer["track"] not in ("guest", "wall"):
                raise UnsupportedSpecError(f"{path}.track", f"{timer['track']!r}: only the rtc tracks guest or wall")
            attrs["track"] = timer["track"]
        sub(element, "timer", **attrs)
