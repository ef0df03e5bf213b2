"""The environment a child process gets: ours without credentials.

A launcher started in the background lives as long as its VM, and ``/proc/PID/environ`` keeps
what it was started with: a password inherited there is readable for days. Every child we
start (launchers, hooks, qemu-img, virt-v2v, libvirtd) gets ``child_env()`` instead of ours.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

# Variables that hold a secret: ours by name, and anything whose name says it is one.
SECRET_VARIABLES = frozenset(
    {
        "MIGRATOR_VSPHERE_PASSWORD",
        "GOVC_PASSWORD",
        "GOVC_URL",  # govc's URL may carry user:password@
        "VSPHERE_PASSWORD",
        "VC_PASSWORD",
    }
)
_SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|API_?KEY|PRIVATE_KEY)", re.IGNORECASE)


def is_secret(name: str) -> bool:
    return name in SECRET_VARIABLES or bool(_SECRET_NAME.search(name))


def child_env(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """``base`` (default: our environment) without any secret variable, plus ``extra``."""
    source = os.environ if base is None else base
    env = {name: value for name, value in source.items() if not is_secret(name)}
    env.update(extra)
    return env
