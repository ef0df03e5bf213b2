"""Inventory + maps + options → Plan. Pure: no I/O.

Resolution rules (documented in docs/plan-format.md):
- networks: a mapped source network goes where the map says; otherwise --default-network
  (pod or ignore) when given; otherwise, with no network map at all, the VM's first NIC goes
  to the pod network and any other NIC is unmapped (Critical). With a network map given, an
  unmapped network is Critical.
- storage: a mapped datastore gets its storage class; otherwise --default-storage-class;
  otherwise, with no storage map (or for local VMX/OVF disks), the cluster's default
  StorageClass (storage_class: null). With a storage map given, an unmapped datastore is Critical.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from core.inventory import VM
from core.plan import Concern, NetworkMapping, NetworkTarget, Plan, PlannedDisk, PlannedNic, PlannedVM
from migrator.planning.mapping import Maps
from migrator.planning.naming import assign_names, claim_name
from migrator.planning.rules import RULES, Rule, RuleContext

log = logging.getLogger(__name__)

POD_INTERFACE = "default"


@dataclass
class PlanOptions:
    name: str
    source: str  # the source's display URL, never with a password
    namespace: str = "default"
    hooks: dict[str, str] = field(default_factory=dict)
    # where virt-v2v will find virtio-win drivers (an ISO or directory); read from VIRTIO_WIN by default
    virtio_win: str | None = field(default_factory=lambda: os.environ.get("VIRTIO_WIN") or None)
    migration_type: str = "cold"  # every VM's `type`: cold | warm


def _plan_nics(vm: VM, maps: Maps, context: RuleContext) -> list[PlannedNic]:
    planned: list[PlannedNic] = []
    pod_taken = False
    for index, nic in enumerate(vm.nics):
        mapping = maps.networks.get(nic.network) if nic.network is not None else None
        if mapping is None and maps.default_network is not None:
            mapping = NetworkMapping(source=nic.network or "", target=maps.default_network)
        if mapping is None and not maps.network_map_given and not pod_taken:
            mapping = NetworkMapping(source=nic.network or "", target=NetworkTarget.POD)
        if mapping is None:
            context.unmapped_networks.append(nic.label)
            mapping = NetworkMapping(source=nic.network or "", target=NetworkTarget.IGNORE)
        interface = ""
        if mapping.target is NetworkTarget.POD:
            if pod_taken:
                context.extra_pod_nics.append(nic.label)
            pod_taken = True
            interface = POD_INTERFACE
        elif mapping.target is NetworkTarget.MULTUS:
            interface = f"net-{index}"
        planned.append(
            PlannedNic(
                label=nic.label,
                mac=nic.mac,
                source_network=nic.network,
                target=mapping.target,
                multus=mapping.multus,
                interface_name=interface,
            )
        )
    return planned


def _plan_disks(vm: VM, target_name: str, maps: Maps, context: RuleContext) -> list[PlannedDisk]:
    planned: list[PlannedDisk] = []
    for index, disk in enumerate(vm.disks):
        mapping = maps.storage.get(disk.datastore) if disk.datastore else None
        storage_class = mapping.storage_class if mapping else maps.default_storage_class
        if mapping is not None and mapping.max_volume_bytes is not None:
            context.max_volume_bytes[disk.label] = mapping.max_volume_bytes
        if mapping is None and storage_class is None and disk.datastore and maps.storage_map_given:
            context.unmapped_datastores.append(disk.label)
        planned.append(
            PlannedDisk(
                label=disk.label,
                claim_name=claim_name(target_name, index),
                storage_class=storage_class,
                capacity_bytes=disk.capacity_bytes,
                transfer_bytes=disk.transfer_bytes,
                source_file=disk.backing_file,
                datastore=disk.datastore,
                transfer_bytes_upper_bound=not disk.allocation_known,
            )
        )
    return planned


def build_plan(vms: Sequence[VM], maps: Maps, options: PlanOptions, rules: Sequence[Rule] = RULES) -> Plan:
    names = assign_names(vm.name for vm in vms)
    plan = Plan(
        name=options.name,
        source=options.source,
        target_namespace=options.namespace,
        network_map=list(maps.networks.values()),
        storage_map=list(maps.storage.values()),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        hooks=dict(options.hooks),
    )
    contexts: list[RuleContext] = []
    for vm, naming in zip(vms, names, strict=True):
        planned = PlannedVM(source_name=vm.name, target_name=naming.target_name, vm=vm, type=options.migration_type)
        context = RuleContext(
            planned=planned, plan_vms=plan.vms, collides_with=naming.collides_with, virtio_win=options.virtio_win
        )
        planned.nics = _plan_nics(vm, maps, context)
        planned.disks = _plan_disks(vm, naming.target_name, maps, context)
        plan.vms.append(planned)
        contexts.append(context)
    # rules run once every VM is planned: some look across the plan (MACs, names)
    mac_owners: dict[str, list[tuple[PlannedVM, PlannedNic]]] = {}
    for planned in plan.vms:
        for nic in planned.nics:
            if nic.mac and nic.target is not NetworkTarget.IGNORE:
                mac_owners.setdefault(nic.mac.lower(), []).append((planned, nic))
    for planned, context in zip(plan.vms, contexts, strict=True):
        context.mac_owners = mac_owners
        planned.concerns = evaluate(planned.vm, context, rules)
        _log_decisions(planned)
    log.info("planned %d VM(s), %d blocked", len(plan.vms), sum(1 for v in plan.vms if v.blocked))
    return plan


def _log_decisions(planned: PlannedVM) -> None:
    """-vv: what the planner decided for one VM, and why (names, maps, concerns)."""
    log.debug("plan %s → %s", planned.source_name, planned.target_name)
    for disk in planned.disks:
        bound = " (upper bound: allocation unknown)" if disk.transfer_bytes_upper_bound else ""
        log.debug(
            "  disk %s → %s, storage class %s, %d bytes to copy%s",
            disk.label,
            disk.claim_name,
            disk.storage_class or "(cluster default)",
            disk.transfer_bytes,
            bound,
        )
    for nic in planned.nics:
        log.debug("  nic %s (%s) → %s %s", nic.label, nic.source_network, nic.target.value, nic.multus or "")
    for concern in planned.concerns:
        log.debug("  concern %s %s: %s", concern.severity.value, concern.id, concern.message)


def evaluate(vm: VM, context: RuleContext, rules: Sequence[Rule] = RULES) -> list[Concern]:
    concerns: list[Concern] = []
    for rule in rules:
        concerns.extend(rule(vm, context))
    return concerns
