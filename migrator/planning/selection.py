"""Which VMs a plan covers: names and globs (--vm), a folder (--folder), a cluster (--cluster)."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from core.errors import NotFoundError
from core.inventory import VM

_GLOB_CHARS = set("*?[")


def _in_folder(vm: VM, folder: str) -> bool:
    if vm.folder is None:
        return False
    want = folder.rstrip("/")
    have = vm.folder.rstrip("/")
    if want.startswith("/"):
        return have == want or have.startswith(want + "/") or fnmatch.fnmatchcase(have, want)
    # a relative folder name matches any path component sequence: "prod" matches /DC0/vm/prod
    return f"/{want}/" in f"{have}/" or fnmatch.fnmatchcase(have, f"*/{want}")


def select_vms(
    vms: Sequence[VM],
    patterns: Sequence[str] = (),
    folder: str | None = None,
    cluster: str | None = None,
) -> list[VM]:
    """VMs matching every given filter, in inventory order. Templates only when named by --vm.

    A --vm name or glob that matches no VM is a NotFoundError, so a typo never yields a
    silently smaller plan.
    """
    chosen = list(vms)
    if folder:
        chosen = [vm for vm in chosen if _in_folder(vm, folder)]
        if not chosen:
            raise NotFoundError(f"no VM in folder {folder!r}")
    if cluster:
        chosen = [vm for vm in chosen if vm.cluster is not None and vm.cluster.name == cluster]
        if not chosen:
            raise NotFoundError(f"no VM in cluster {cluster!r}")
    if not patterns:
        return [vm for vm in chosen if not vm.is_template]
    picked: list[VM] = []
    for pattern in patterns:
        if _GLOB_CHARS & set(pattern):
            matches = [vm for vm in chosen if fnmatch.fnmatchcase(vm.name, pattern)]
        else:
            matches = [vm for vm in chosen if vm.name == pattern]
        if not matches:
            raise NotFoundError(
                f"no VM named {pattern!r}" + (" in the selected folder/cluster" if folder or cluster else "")
            )
        picked.extend(vm for vm in matches if all(vm is not p for p in picked))
    return picked
