"""What the reconcilers read instead of the API: kopf's indexes of the watched objects.

kopf keeps each index up to date from its watches (and drops an object's entries when it is deleted), and
starts the handlers only once every index holds its initial listing. A stale entry is harmless: every write
carries a resourceVersion or uid precondition, a 409 means a newer version is on its way, and its event
reconciles again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

Key = tuple[str, str]


class Lookups(Protocol):
    def vm(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def vmi(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def pvc_exists(self, namespace: str, name: str) -> bool: ...

    def node_offers_kvm(self) -> bool: ...


def _one(index: Mapping[Any, Any], key: Any) -> dict[str, Any] | None:
    """The newest object stored under ``key`` in a kopf index (whose values are collections), or None."""
    try:
        store = index[key]
    except KeyError:
        return None
    newest: dict[str, Any] | None = None
    for obj in store:
        if newest is None or _resource_version(obj) >= _resource_version(newest):
            newest = obj
    return newest


def _resource_version(obj: Mapping[str, Any]) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def newest(current: dict[str, Any], other: dict[str, Any] | None) -> dict[str, Any]:
    """``other`` if it is a newer copy of the same object (same uid, higher resourceVersion), else ``current``."""
    if other is None or other["metadata"].get("uid") != current["metadata"].get("uid"):
        return current
    return other if _resource_version(other) > _resource_version(current) else current


@dataclass(frozen=True)
class IndexLookups:
    """Lookups over the kopf indexes a handler receives (``vm_index``, ``vmi_index``... in ``main``)."""

    vms: Mapping[Any, Any]
    vmis: Mapping[Any, Any]
    pods: Mapping[Any, Any]
    pvcs: Mapping[Any, Any]
    kvm_nodes: Mapping[Any, Any]

    def vm(self, namespace: str, name: str) -> dict[str, Any] | None:
        return _one(self.vms, (namespace, name))

    def vmi(self, namespace: str, name: str) -> dict[str, Any] | None:
        return _one(self.vmis, (namespace, name))

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return _one(self.pods, (namespace, name))

    def pvc_exists(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self.pvcs

    def node_offers_kvm(self) -> bool:
        return "kvm" in self.kvm_nodes
