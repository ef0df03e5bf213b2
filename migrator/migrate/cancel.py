"""Cancel requests: ``migrator cancel --vm NAME`` in one shell, the running ``migrate`` in another.

A request is a small file under the state directory (``cancel/<vm>``), so any process on the
machine can make one and the coordinator can look for it before every step and every chunk
(a ``stat``). The coordinator removes it once the VM is rolled back.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

DIRECTORY = "cancel"


def _path(state_dir: Path, vm: str) -> Path:
    return state_dir / DIRECTORY / re.sub(r"[^A-Za-z0-9_.-]", "_", vm)


def request(state_dir: Path, vm: str) -> Path:
    path = _path(state_dir, vm)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(f"{vm}\n{time.time()}\n")
    partial.replace(path)
    return path


def requested(state_dir: Path, vm: str) -> bool:
    return _path(state_dir, vm).exists()


def clear(state_dir: Path, vm: str) -> None:
    _path(state_dir, vm).unlink(missing_ok=True)
