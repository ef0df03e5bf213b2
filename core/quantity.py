"""Kubernetes resource quantities ("2Gi", "500M", 1073741824) as integers: the kubernetes client's parser.

Each caller turns the ``ValueError`` into its own one-line error (a plan's map file, a VM spec field).
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from decimal import Decimal
from functools import cache
from types import ModuleType


@cache
def _kubernetes_parser() -> Callable[[str], Decimal]:
    """The kubernetes client's ``kubernetes.utils.quantity.parse_quantity``, loaded from its own file.

    ``import kubernetes.utils.quantity`` runs the package's ``__init__``, which imports the whole API
    client (about 0.3 s of CPU): every VM start (the launcher builds its domain from quantities) would
    pay it. The module itself needs only ``decimal``, so it is loaded alone; should a release move it,
    the ordinary import is the fallback.
    """
    package = importlib.util.find_spec("kubernetes")  # finds the package without importing it
    locations = list(package.submodule_search_locations or []) if package else []
    for location in locations:
        spec = importlib.util.spec_from_file_location("core._kubernetes_quantity", f"{location}/utils/quantity.py")
        if spec is None or spec.loader is None:
            continue
        module: ModuleType = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except (OSError, ImportError):
            continue
        return module.parse_quantity  # type: ignore[no-any-return]
    from kubernetes.utils.quantity import parse_quantity as kubernetes_quantity

    return kubernetes_quantity  # type: ignore[no-any-return]


def parse_quantity(value: object) -> int:
    """A quantity in its base unit (bytes for memory and storage); ``ValueError`` when it is not one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(_kubernetes_parser()(str(value).strip()))


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
