"""VM selection: names, globs, folders, clusters."""

from __future__ import annotations

import pytest

from core.errors import NotFoundError
from core.inventory import ClusterFacts
from migrator.planning.selection import select_vms
from tests.planning.factory import make_vm


@pytest.fixture
def vms():
    return [
        make_vm("web01", folder="/DC0/vm/prod", cluster=ClusterFacts("C1")),
        make_vm("web02", folder="/DC0/vm/prod/frontend", cluster=ClusterFacts("C2")),
        make_vm("db01", folder="/DC0/vm/data", cluster=ClusterFacts("C1")),
        make_vm("tmpl", folder="/DC0/vm/prod", is_template=True),
    ]


def test_all_but_templates(vms) -> None:
    assert [v.name for v in select_vms(vms)] == ["web01", "web02", "db01"]


def test_names_and_globs(vms) -> None:
    assert [v.name for v in select_vms(vms, ["db01", "web*"])] == ["db01", "web01", "web02"]
    assert [v.name for v in select_vms(vms, ["tmpl"])] == ["tmpl"]  # named explicitly


def test_unknown_name_is_not_found(vms) -> None:
    with pytest.raises(NotFoundError, match="no VM named 'web99'"):
        select_vms(vms, ["web01", "web99"])
    with pytest.raises(NotFoundError):
        select_vms(vms, ["zz*"])


def test_folder_and_cluster(vms) -> None:
    assert [v.name for v in select_vms(vms, folder="/DC0/vm/prod")] == ["web01", "web02"]
    assert [v.name for v in select_vms(vms, folder="frontend")] == ["web02"]
    assert [v.name for v in select_vms(vms, cluster="C1")] == ["web01", "db01"]
    assert [v.name for v in select_vms(vms, ["web*"], cluster="C1")] == ["web01"]
    with pytest.raises(NotFoundError):
        select_vms(vms, folder="/DC0/vm/nowhere")
