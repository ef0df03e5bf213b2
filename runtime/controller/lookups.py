"""What the reconcilers read instead of the API (``Lookups``): the controller's cache of the watched objects
(``runtime.controller.cache``), and how two copies of an object compare.

A stale entry is harmless: every write carries a resourceVersion or uid precondition, a 409 means a newer
version is on its way, and its event reconciles again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

Key = tuple[str, str]


class Lookups(Protocol):
    def vm(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def vmi(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def pvc_exists(self, namespace: str, name: str) -> bool: ...

    def node_offers_kvm(self) -> bool: ...


def resource_version(obj: Mapping[str, Any]) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def newest(current: dict[str, Any], other: dict[str, Any] | None) -> dict[str, Any]:
    """``other`` if it is a newer copy of the same object (same uid, higher resourceVersion), else ``current``."""
    if other is None or other["metadata"].get("uid") != current["metadata"].get("uid"):
        return current
    return other if resource_version(other) > resource_version(current) else current
