"""Every rule: it fires on the fact it is about, and stays quiet without it."""

from __future__ import annotations

from core.inventory import (
    ClusterFacts,
    Controller,
    ControllerKind,
    DiskMode,
    Firmware,
    PassthroughDevice,
    Sharing,
    Snapshot,
)
from core.plan import Severity
from migrator.planning.mapping import Maps, build_maps
from migrator.planning.rules import RULE_MODULES, RULES
from tests.planning.factory import ids, make_vm, plan_of


def concerns_of(vm, maps=None):
    return plan_of(vm, maps=maps).vms[0].concerns


def test_rule_set_is_data() -> None:
    assert len(RULES) == len(RULE_MODULES) == len({r.id for r in RULES})
    assert all(r.summary for r in RULES)


def test_every_rule_says_what_to_do() -> None:
    """The assessment report shows each concern's remedy: a rule without one leaves its readers stuck."""
    assert [rule.id for rule in RULES if not rule.remedy.strip() or not rule.summary.strip()] == []


def test_clean_vm_has_no_concerns() -> None:
    assert ids(make_vm()) == []


def test_severities_follow_forklift() -> None:
    by_id = {r.id: r.severity for r in RULES}
    assert by_id["pci-passthrough"] is Severity.CRITICAL
    assert by_id["independent-disk"] is Severity.CRITICAL
    assert by_id["rdm-disk"] is Severity.CRITICAL
    assert by_id["disk-not-on-datastore"] is Severity.CRITICAL
    assert by_id["invalid-disk-capacity"] is Severity.CRITICAL
    assert by_id["cbt-disabled"] is Severity.WARNING
    assert by_id["snapshots-present"] is Severity.INFORMATION
    assert by_id["dpm-enabled"] is Severity.INFORMATION
    assert by_id["disk-serials"] is Severity.INFORMATION


def test_cbt_disabled() -> None:
    assert "cbt-disabled" in ids(make_vm(cbt_enabled=False))
    assert "cbt-disabled" not in ids(make_vm(cbt_enabled=None))  # unknown is not "off"


def test_cbt_disabled_per_disk() -> None:
    vm = make_vm(disks=2, cbt_enabled=True)
    vm.disks[1].cbt_enabled = False
    concerns = [c for c in concerns_of(vm) if c.id == "cbt-disabled-disk"]
    assert len(concerns) == 1 and "Hard disk 2" in concerns[0].message


def test_snapshots_and_consolidation() -> None:
    assert "snapshots-present" in ids(make_vm(snapshots=[Snapshot("s1")]))
    assert "consolidation-needed" in ids(make_vm(consolidation_needed=True))


def test_cpu_affinity_and_numa() -> None:
    vm = make_vm()
    vm.cpu.affinity = [0, 2]
    vm.cpu.numa_affinity = [1]
    found = ids(vm)
    assert "cpu-affinity" in found and "numa-affinity" in found


def test_hotplug() -> None:
    assert "cpu-memory-hotplug" in ids(make_vm(memory_hot_add=True))
    vm = make_vm()
    vm.cpu.hot_add = True
    assert "CPU hot-add" in next(c.message for c in concerns_of(vm) if c.id == "cpu-memory-hotplug")


def test_disk_not_on_datastore_only_for_vsphere() -> None:
    vm = make_vm()
    vm.disks[0].datastore = None
    assert "disk-not-on-datastore" in ids(vm)
    local = make_vm(source="vmx")
    local.disks[0].datastore = None
    assert "disk-not-on-datastore" not in ids(local)


def test_too_many_disks() -> None:
    assert "too-many-disks" in ids(make_vm(disks=166))
    assert "too-many-disks" not in ids(make_vm(disks=165))


def test_independent_disk() -> None:
    vm = make_vm()
    vm.disks[0].mode = DiskMode.INDEPENDENT_NONPERSISTENT
    assert "independent-disk" in ids(vm)


def test_disk_serials() -> None:
    assert "disk-serials" in ids(make_vm(disk_enable_uuid=True))
    sata = make_vm(disk_enable_uuid=True)
    sata.disks[0].controller = Controller(ControllerKind.SATA, 0, "ahci")
    assert "disk-serials" not in ids(sata)


def test_invalid_disk_capacity() -> None:
    zero = make_vm()
    zero.disks[0].capacity_bytes = 0
    odd = make_vm()
    odd.disks[0].capacity_bytes = 1000
    assert "invalid-disk-capacity" in ids(zero) and "invalid-disk-capacity" in ids(odd)


def test_dpm_and_drs() -> None:
    cluster = ClusterFacts("C1", drs_enabled=True, drs_behavior="fullyAutomated", dpm_enabled=True)
    found = ids(make_vm(cluster=cluster))
    assert "dpm-enabled" in found and "drs-fully-automated" in found
    manual = ClusterFacts("C1", drs_enabled=True, drs_behavior="manual", dpm_enabled=False)
    assert ids(make_vm(cluster=manual)) == []


def test_fault_tolerance_and_host_affinity() -> None:
    found = ids(make_vm(fault_tolerance=True, host_affinity=True))
    assert "fault-tolerance" in found and "host-affinity" in found


def test_hostname() -> None:
    assert "hostname-empty-or-default" in ids(make_vm(hostname=""))
    assert "hostname-empty-or-default" in ids(make_vm(hostname="localhost.localdomain"))
    assert "hostname-empty-or-default" not in ids(make_vm(source="ovf", hostname=None))


def test_no_guest_ips() -> None:
    assert "no-guest-ips" in ids(make_vm(ip_addresses=[]))
    assert "no-guest-ips" not in ids(make_vm(ip_addresses=[], nics=0))


def test_invalid_name_and_collision() -> None:
    assert "invalid-name" in ids(make_vm(name="Web 01"))
    plan = plan_of(make_vm(name="Web_01"), make_vm(name="web-01"))
    assert [v.target_name for v in plan.vms] == ["web-01", "web-01-2"]
    assert "name-collision" in [c.id for c in plan.vms[1].concerns]
    assert "name-collision" in [c.id for c in plan.vms[0].concerns]


def test_pci_passthrough_is_critical() -> None:
    vm = make_vm(passthrough=[PassthroughDevice("PCI device 0", "pci", "0x8086:0x10d3")])
    plan = plan_of(vm)
    assert plan.vms[0].critical_ids() == ["pci-passthrough"] and plan.blocked


def test_rdm() -> None:
    vm = make_vm()
    vm.disks[0].rdm = True
    assert "rdm-disk" in ids(vm)


def test_shared_disk() -> None:
    vm = make_vm()
    vm.disks[0].sharing = Sharing.MULTI_WRITER
    assert "shared-disk" in ids(vm)
    bus = make_vm()
    bus.disks[0].controller = Controller(ControllerKind.SCSI, 1, "lsilogic", shared_bus="physicalSharing")
    assert "shared-disk" in ids(bus)


def test_sriov_vtpm_usb() -> None:
    vm = make_vm(vtpm=True, usb_controllers=["usb_xhci"])
    vm.nics[0].model = "sriov"
    found = ids(vm)
    assert {"sriov-nic", "vtpm", "usb-controller"} <= set(found)


def test_multus_nic_needs_kubevirt_itself() -> None:
    multus = concerns_of(make_vm(), build_maps(network_flags=["VM Network=multus:prod/vlan10"]))
    (concern,) = [c for c in multus if c.id == "multus-needs-kubevirt"]
    assert concern.severity is Severity.WARNING
    assert "Network adapter 1 → multus:prod/vlan10" in concern.message and "KubeVirt" in concern.message
    assert "multus-needs-kubevirt" not in ids(make_vm(), build_maps(network_flags=["VM Network=pod"]))


def test_unsupported_guest_os() -> None:
    assert "unsupported-guest-os" in ids(make_vm(guest_id="rhel6_64Guest"))
    assert "unsupported-guest-os" in ids(make_vm(guest_id="rhel6-64", source="vmx"))
    assert "unsupported-guest-os" not in ids(make_vm(guest_id="rhel8_64Guest"))


def test_unmapped_network_with_a_map() -> None:
    maps = build_maps(network_flags=["Other=pod"])
    assert "unmapped-network" in ids(make_vm(), maps)
    assert "unmapped-network" not in ids(make_vm(), build_maps(network_flags=["VM Network=pod"]))


def test_default_network_first_nic_pod_second_unmapped() -> None:
    plan = plan_of(make_vm(nics=2))
    nics = plan.vms[0].nics
    assert [n.target.value for n in nics] == ["pod", "ignore"]
    assert plan.vms[0].critical_ids() == ["unmapped-network"]
    ignored = plan_of(make_vm(nics=2), maps=build_maps(default_network="ignore"))
    assert ignored.vms[0].critical_ids() == []


def test_multiple_pod_nics() -> None:
    maps = build_maps(network_flags=["VM Network=pod"])
    assert plan_of(make_vm(nics=2), maps=maps).vms[0].critical_ids() == ["multiple-pod-nics"]


def test_unmapped_datastore() -> None:
    maps = build_maps(storage_flags=["other=fast"])
    assert "unmapped-datastore" in ids(make_vm(), maps)
    assert "unmapped-datastore" not in ids(make_vm(), Maps())  # no map: the cluster's default class
    with_default = build_maps(storage_flags=["other=fast"], default_storage_class="standard")
    assert "unmapped-datastore" not in ids(make_vm(), with_default)


def test_duplicate_mac() -> None:
    a, b = make_vm(name="a"), make_vm(name="b")
    plan = plan_of(a, b)
    assert all("duplicate-mac" in [c.id for c in v.concerns] for v in plan.vms)
    b.nics[0].mac = "00:50:56:99:99:99"
    assert all("duplicate-mac" not in [c.id for c in v.concerns] for v in plan_of(a, b).vms)


def test_secure_boot() -> None:
    assert "secure-boot" in ids(make_vm(firmware=Firmware.EFI, secure_boot=True))
    assert "secure-boot" not in ids(make_vm(firmware=Firmware.EFI))


def test_encrypted() -> None:
    assert "encrypted-vm" in ids(make_vm(encrypted=True))
    vm = make_vm()
    vm.disks[0].encrypted = True
    assert "encrypted-vm" in ids(vm)


def test_disk_exceeds_storage_class() -> None:
    small = build_maps(storage_flags=["ds1=fast"])
    small.storage["ds1"].max_volume_bytes = 5 * 2**30
    assert "disk-exceeds-storage-class" in ids(make_vm(), small)
    small.storage["ds1"].max_volume_bytes = 20 * 2**30
    assert "disk-exceeds-storage-class" not in ids(make_vm(), small)


def test_invalid_memory() -> None:
    assert plan_of(make_vm(memory_mib=0)).vms[0].critical_ids() == ["invalid-memory"]
    assert "invalid-memory" not in ids(make_vm())


def test_duplicate_mac_shared_by_many_names_a_few() -> None:
    plan = plan_of(*(make_vm(name=f"vm{i}") for i in range(10)))
    message = next(c.message for c in plan.vms[0].concerns if c.id == "duplicate-mac")
    assert message.endswith(
        "vm1 Network adapter 1, vm2 Network adapter 1, vm3 Network adapter 1 and 6 more in this plan also has."
    )
