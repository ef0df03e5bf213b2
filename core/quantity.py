"""Kubernetes resource quantities ("2Gi", "500M", 1073741824) as integers: the kubernetes client's parser.

Each caller turns the ``ValueError`` into its own one-line error (a plan's map file, a VM spec field).
"""

from __future__ import annotations

import math


def parse_quantity(value: object) -> int:
    """A quantity in its base unit (bytes for memory and storage); ``ValueError`` when it is not one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    # imported here: the kubernetes package loads its whole API client (a third of a second), which the commands
    # that never read a quantity (status, plan, most of the CLI) should not pay for
    from kubernetes.utils.quantity import parse_quantity as kubernetes_quantity

    return int(kubernetes_quantity(str(value).strip()))


MIB = 1024 * 1024
GIB = 1024 * MIB
FILESYSTEM_OVERHEAD = 0.055  # CDI's default: the share of a Filesystem volume its file system takes


def format_quantity(size_bytes: int) -> str:
    """A Kubernetes quantity, in Gi or Mi when exact, else plain bytes."""
    if size_bytes % GIB == 0:
        return f"{size_bytes // GIB}Gi"
    if size_bytes % MIB == 0:
        return f"{size_bytes // MIB}Mi"
    return str(size_bytes)


def claim_bytes(capacity_bytes: int, volume_mode: str = "Filesystem", overhead: float = FILESYSTEM_OVERHEAD) -> int:
    """Room for a disk image: Block holds it exactly; a Filesystem PVC also holds the file system (CDI's rule).

    The one rule for `migrator convert`'s PVCs and the Migration controller's, which must request the same size."""
    if volume_mode == "Block":
        return capacity_bytes
    needed = math.ceil(capacity_bytes / (1.0 - overhead))
    return math.ceil(needed / MIB) * MIB
