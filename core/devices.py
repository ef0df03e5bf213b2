"""Names the guest sees its devices by, shared by the domain translations (runtime and guest conversion)."""

from __future__ import annotations


def disk_target_name(prefix: str, index: int) -> str:
    """The ``index``-th (0-based) disk of a bus prefix as Linux and libvirt name it: vda … vdz, vdaa, vdab …"""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("a") + rest) + letters
    return prefix + letters
