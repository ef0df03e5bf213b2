"""Kubernetes resource quantities ("2Gi", "500M", 1073741824) as integers: the kubernetes client's parser.

Each caller turns the ``ValueError`` into its own one-line error (a plan's map file, a VM spec field).
"""

from __future__ import annotations

from kubernetes.utils.quantity import parse_quantity as kubernetes_quantity


def parse_quantity(value: object) -> int:
    """A quantity in its base unit (bytes for memory and storage); ``ValueError`` when it is not one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(kubernetes_quantity(str(value).strip()))
