"""The controller's cache keeps the newest version of each watched object and nothing of those that are gone;
its start gate holds the handlers until what existed at start has arrived, and forgets what was deleted before
its watch event came."""

from __future__ import annotations

import asyncio
from typing import Any

from runtime.controller.cache import Cache, StartGate


def obj(name: str, uid: str, version: int, claim: str | None = None, **status: Any) -> dict[str, Any]:
    volumes = [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}] if claim else []
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": str(version)},
        "spec": {"volumes": volumes},
        "status": status,
    }


def test_newer_versions_replace_older_ones_and_not_the_other_way() -> None:
    cache = Cache()
    cache.vmis.observe("ADDED", obj("a", "u1", 5))
    cache.vmis.observe("MODIFIED", obj("a", "u1", 7, phase="Scheduled"))
    cache.vmis.observe("MODIFIED", obj("a", "u1", 6, phase="Pending"))  # late: kopf's workers are per object
    assert cache.vmi("ns", "a")["status"] == {"phase": "Scheduled"}


def test_an_object_deleted_and_created_again_keeps_the_new_one() -> None:
    """The two objects of one name have their own kopf workers: the old one's DELETED may come second."""
    cache = Cache()
    cache.vmis.observe("ADDED", obj("a", "old", 5))
    cache.vmis.observe("ADDED", obj("a", "new", 9))
    cache.vmis.observe("MODIFIED", obj("a", "old", 6))
    cache.vmis.observe("DELETED", obj("a", "old", 8))
    assert cache.vmi("ns", "a")["metadata"]["uid"] == "new"
    cache.vmis.observe("DELETED", obj("a", "new", 10))
    assert cache.vmi("ns", "a") is None
    assert cache.vmis.objects == {} and cache.vmis.waiting == {}


def test_claims_follow_the_spec_and_go_with_the_object() -> None:
    cache = Cache()
    cache.vmis.observe("ADDED", obj("a", "u1", 1, claim="disk-a"))
    cache.vmis.observe("ADDED", obj("b", "u2", 2, claim="disk-a"))
    assert cache.vmis.waiting_for("ns", "disk-a") == ["a", "b"]
    cache.vmis.observe("MODIFIED", obj("a", "u1", 3, claim="disk-c"))
    assert cache.vmis.waiting_for("ns", "disk-a") == ["b"]
    assert cache.vmis.waiting_for("ns", "disk-c") == ["a"]
    cache.vmis.observe("DELETED", obj("a", "u1", 4, claim="disk-c"))
    cache.vmis.observe("DELETED", obj("b", "u2", 5, claim="disk-a"))
    assert cache.vmis.waiting == {}


def test_nodes_count_only_while_they_offer_kvm() -> None:
    cache = Cache()
    node = {"metadata": {"name": "n", "uid": "n1", "resourceVersion": "1"}, "status": {"allocatable": {}}}
    cache.observe_node(None, node)
    assert not cache.node_offers_kvm()
    kvm = {**node, "metadata": {**node["metadata"], "resourceVersion": "2"}}
    kvm["status"] = {"allocatable": {"devices.kubevirt.io/kvm": "1k"}}
    cache.observe_node("MODIFIED", kvm)
    assert cache.node_offers_kvm()
    cache.observe_node("MODIFIED", {**node, "metadata": {**node["metadata"], "resourceVersion": "3"}})
    assert not cache.node_offers_kvm()


def test_the_gate_opens_once_everything_listed_has_arrived() -> None:
    async def run() -> list[str]:
        gate = StartGate()
        gate.expect({"vms": {"v1"}, "pods": {"p1", "p2"}})
        order: list[str] = []

        async def handler() -> None:
            await gate.wait()
            order.append("handled")

        task = asyncio.create_task(handler())
        for kind, uid in [("vms", "v1"), ("pods", "p1"), ("pods", "other")]:
            gate.arrive(kind, uid)
            await asyncio.sleep(0)
            order.append(f"{kind}/{uid}")
        gate.arrive("pods", "p2")
        await task
        return order

    assert asyncio.run(run()) == ["vms/v1", "pods/p1", "pods/other", "handled"]


def test_the_gate_forgets_what_was_deleted_before_its_watch_event(monkeypatch: Any) -> None:
    monkeypatch.setattr("runtime.controller.cache.RELIST_AFTER", 0.01)

    async def run() -> list[str]:
        gate = StartGate()
        gate.expect({"vmis": {"alive", "deleted"}})
        asked: list[str] = []

        async def relist(kind: str) -> set[str]:
            asked.append(kind)
            if len(asked) == 1:
                raise ConnectionError("the API is down a moment")
            return {"alive", "created-since"}

        relisting = asyncio.create_task(gate.relist_until_open(relist))
        await asyncio.sleep(0.1)
        assert gate.pending == {"vmis": {"alive"}}  # "alive" exists: its event is still to come
        gate.arrive("vmis", "alive")
        await asyncio.wait_for(gate.wait(), 1)
        await asyncio.wait_for(relisting, 1)
        return asked

    assert len(asyncio.run(run())) >= 2


def test_a_gate_with_nothing_listed_is_open() -> None:
    gate = StartGate()
    assert gate.opened.is_set()
    gate.expect({"vms": set(), "pods": set()})
    assert gate.opened.is_set()
