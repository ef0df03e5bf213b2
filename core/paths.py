"""Per-machine paths shared by the packages."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Per-machine cache (built simulator, test guests, accelerator probe): `$XDG_CACHE_HOME/migrator`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "migrator"
