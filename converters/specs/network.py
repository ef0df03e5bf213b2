"""NICs and networks from the plan's network map: pod (masquerade, at most one), multus (bridge), or dropped."""

from __future__ import annotations

from typing import Any

from core.errors import InputError
from core.plan import NetworkTarget, PlannedNic, PlannedVM


def interface_name(nic: PlannedNic, index: int) -> str:
    return nic.interface_name or f"net-{index}"


def interfaces_and_networks(planned: PlannedVM, model: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    interfaces: list[dict[str, Any]] = []
    networks: list[dict[str, Any]] = []
    pods = 0
    for index, nic in enumerate(planned.nics):
        if nic.target is NetworkTarget.IGNORE:
            continue
        name = interface_name(nic, index)
        interface: dict[str, Any] = {"name": name, "model": model}
        if nic.mac:
            interface["macAddress"] = nic.mac.lower()
        if nic.target is NetworkTarget.POD:
            pods += 1
            if pods > 1:
                raise InputError(
                    f"VM {planned.source_name}: more than one NIC maps to the pod network; map the others to multus"
                )
            interface["masquerade"] = {}
            networks.append({"name": name, "pod": {}})
        else:
            if not nic.multus:
                raise InputError(f"VM {planned.source_name}: NIC {nic.label} maps to multus without a network name")
            interface["bridge"] = {}
            networks.append({"name": name, "multus": {"networkName": nic.multus}})
        interfaces.append(interface)
    return interfaces, networks
