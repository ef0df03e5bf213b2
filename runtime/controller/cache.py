"""What the reconcilers read instead of the API: the watched objects as the watch last delivered them, kept by
the controller's own event handlers, and the gate that holds the handlers until the start's listing is in.

Why not kopf's indexes (``@kopf.index``), which did this before: kopf invokes an index handler through the same
machinery as an event handler (a cause, its keyword arguments, an outcome), once per event and per index, on
top of the event handler the same event needs anyway. Every event of this controller reaches an event handler
(the VM's echo included: the handler tells it apart), so the index invocation was the second half of the fixed
cost of each of its ~6 events per VM (bench-controller: −0.65 CPU-s per 1,000 VMs without it). Keeping the
objects in the handler that is invoked anyway costs a dict update.

What kopf's indexes gave that this keeps:

- one entry per object, replaced by newer versions only (resourceVersion; kopf serializes the events of one
  object, not of two objects of the same name: a VM deleted and created again), dropped on its DELETED event,
  so the cache holds what exists and nothing more (tests/runtime/test_controller_memory.py: RSS flat over
  5,000 VMs created and deleted);
- no handler decides before the objects that existed at start are in: ``StartGate``.

A stale entry is harmless, as it was with the indexes: every write carries a resourceVersion or uid
precondition, a 409 means a newer version is on its way, and its event reconciles again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from core.quantity import parse_quantity
from runtime.controller.lookups import Key, resource_version
from runtime.controller.pods import KVM_RESOURCE, claims

log = logging.getLogger(__name__)
RELIST_AFTER = 2.0  # seconds the gate waits for the watch before it asks the API which objects are still there


def key_of(obj: dict[str, Any]) -> Key:
    metadata = obj.get("metadata") or {}
    return metadata.get("namespace") or "", metadata.get("name") or ""


def uid_of(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


@dataclass
class Kind:
    """The objects of one kind by (namespace, name), newest version only; and, for VMs and instances, who waits
    for which claim: (namespace, claim) → names."""

    claims_of: Callable[[dict[str, Any]], Iterable[str]] | None = None
    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    waiting: dict[Key, set[str]] = field(default_factory=dict)

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((namespace, name))

    def waiting_for(self, namespace: str, claim: str) -> list[str]:
        return sorted(self.waiting.get((namespace, claim), ()))

    def observe(self, type: str | None, obj: dict[str, Any]) -> None:
        """A watch event (``type`` None: from the listing at start)."""
        key = key_of(obj)
        cached = self.objects.get(key)
        if type == "DELETED":
            # Only this object: another of the same name, created since, may be cached already.
            if cached is not None and uid_of(cached) == uid_of(obj):
                self._forget(key, cached)
            return
        if cached is not None:
            if resource_version(obj) < resource_version(cached):
                return  # an older version of it, or of an object of that name deleted since
            self._forget(key, cached)
        self.objects[key] = obj
        for claim in self.claims_of(obj) if self.claims_of else ():
            self.waiting.setdefault((key[0], claim), set()).add(key[1])

    def _forget(self, key: Key, cached: dict[str, Any]) -> None:
        del self.objects[key]
        for claim in self.claims_of(cached) if self.claims_of else ():
            names = self.waiting.get((key[0], claim))
            if names is not None:
                names.discard(key[1])
                if not names:
                    del self.waiting[(key[0], claim)]


class StartGate:
    """Holds the handlers until every object that existed at start has reached the cache, as kopf holds its
    handlers until its indexes hold the initial listing (a VM decided before its instance is cached would
    create another, a started instance whose pod is not cached yet would be failed).

    ``expect`` takes, per kind, the uids of a listing made before the watches started; each watch event (of
    the watch's own listing or later) ``arrive``s. An object deleted between that listing and the watch's own
    never arrives: every RELIST_AFTER seconds while the gate is shut, ``relist`` (the uids of that kind that
    exist now) forgets the ones that are gone. Open until ``expect`` is called, and once nothing is pending.
    """

    def __init__(self) -> None:
        self.pending: dict[str, set[str]] = {}
        self.opened = asyncio.Event()
        self.opened.set()

    def expect(self, listed: dict[str, set[str]]) -> None:
        self.pending = {kind: set(uids) for kind, uids in listed.items()}
        self._settle()

    def arrive(self, kind: str, uid: str) -> None:
        if self.pending:
            waiting = self.pending.get(kind)
            if waiting is not None:
                waiting.discard(uid)
            self._settle()

    async def wait(self) -> None:
        await self.opened.wait()

    async def relist_until_open(self, relist: Callable[[str], Awaitable[set[str]]]) -> None:
        """The one task that forgets what was deleted before its watch event came: ``relist(kind)`` returns the
        uids of that kind that exist now."""
        while not self.opened.is_set():
            try:
                await asyncio.wait_for(self.opened.wait(), RELIST_AFTER)
            except TimeoutError:
                for kind in list(self.pending):
                    try:
                        exists = await relist(kind)
                    except Exception as error:  # the API is down a moment: the next round asks again
                        log.warning("listing %s to open the start gate failed: %s", kind, error)
                        continue
                    waiting = self.pending.get(kind)
                    gone = waiting - exists if waiting is not None else set()
                    if waiting is not None and gone:
                        log.info("%d %s listed at start were deleted before the watch saw them", len(gone), kind)
                        waiting -= gone
                self._settle()

    def _settle(self) -> None:
        self.pending = {kind: uids for kind, uids in self.pending.items() if uids}
        if self.pending:
            self.opened.clear()
        else:
            self.opened.set()


def offers_kvm(node: dict[str, Any]) -> bool:
    """KubeVirt's device plugin advertises devices.kubevirt.io/kvm ("1k") on the nodes that have /dev/kvm."""
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    try:
        return parse_quantity(str(allocatable.get(KVM_RESOURCE) or "0")) > 0
    except ValueError:
        return False


class Cache:
    """The watched kinds, as ``Lookups``: VMs and instances (with the claims they wait for), launcher pods,
    PVCs, and the nodes that offer KVM."""

    def __init__(self) -> None:
        self.vms = Kind(claims_of=lambda vm: claims(((vm.get("spec") or {}).get("template") or {}).get("spec") or {}))
        self.vmis = Kind(claims_of=lambda vmi: claims(vmi.get("spec") or {}))
        self.pods = Kind()
        self.pvcs = Kind()
        self.kvm_nodes = Kind()

    def observe_node(self, type: str | None, node: dict[str, Any]) -> None:
        self.kvm_nodes.observe(type if offers_kvm(node) else "DELETED", node)

    def vm(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.vms.get(namespace, name)

    def vmi(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.vmis.get(namespace, name)

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.pods.get(namespace, name)

    def pvc_exists(self, namespace: str, name: str) -> bool:
        return self.pvcs.get(namespace, name) is not None

    def node_offers_kvm(self) -> bool:
        return bool(self.kvm_nodes.objects)
