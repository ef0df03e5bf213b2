"""CPU topology and memory."""

from __future__ import annotations

from typing import Any

from core.inventory import VM


def cpu(vm: VM) -> dict[str, Any]:
    """Sockets × cores as the source had them; VMware has no SMT in the guest topology, so threads=1."""
    return {
        "sockets": max(1, vm.cpu.sockets),
        "cores": max(1, vm.cpu.cores_per_socket),
        "threads": 1,
    }


def memory_quantity(vm: VM) -> str:
    return f"{vm.memory_mib}Mi"
