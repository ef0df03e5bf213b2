"""A zero or missing allocation is unknown, not empty: the capacity is shown as the upper bound, marked."""

from __future__ import annotations

import pytest

from core.plan import Plan
from migrator.cli.plan import render_plan
from migrator.planning.planfile import plan_document, validate
from tests.planning.factory import make_vm, plan_of

GIB = 2**30


@pytest.mark.parametrize("allocated", [0, None], ids=["zero", "missing"])
def test_unknown_allocation_is_the_capacity_marked_as_upper_bound(allocated: int | None) -> None:
    vm = make_vm("db01")
    vm.disks[0].capacity_bytes, vm.disks[0].allocated_bytes = 4 * GIB, allocated
    plan = plan_of(vm)
    (disk,) = plan.vms[0].disks
    assert disk.transfer_bytes == 4 * GIB and disk.transfer_bytes_upper_bound
    assert plan.vms[0].transfer_bytes_upper_bound
    text = render_plan(plan, "table", no_headers=False)
    assert "≤ 4.0 GiB" in text and "0 B" not in text
    assert "≤ 4.0 GiB to transfer." in text and "capacity is the upper bound" in text
    document = plan_document(plan)
    validate(document)  # the schema knows the mark
    assert document["vms"][0]["disks"][0]["transfer_bytes_upper_bound"] is True
    assert Plan.from_dict(document).vms[0].disks[0].transfer_bytes_upper_bound


def test_a_known_allocation_is_not_marked() -> None:
    plan = plan_of(make_vm("web01"))
    (disk,) = plan.vms[0].disks
    assert disk.transfer_bytes == GIB and not disk.transfer_bytes_upper_bound
    text = render_plan(plan, "table", no_headers=False)
    assert "≤" not in text and "1.0 GiB to transfer." in text


def test_an_empty_disk_of_zero_capacity_is_known() -> None:
    vm = make_vm("tiny")
    vm.disks[0].capacity_bytes, vm.disks[0].allocated_bytes = 0, 0
    assert not plan_of(vm).vms[0].disks[0].transfer_bytes_upper_bound
