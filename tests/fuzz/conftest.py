"""Fuzzing profiles: short runs in `make test`, long ones with `make fuzz` (HYPOTHESIS_PROFILE=fuzz)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

from core.paths import cache_dir

# The short run keeps no example database (nothing written into the checkout); the long one
# keeps what it found in the per-machine cache, so a failure found once is replayed first.
settings.register_profile(
    "default",
    max_examples=40,
    deadline=2000,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "fuzz",
    max_examples=3000,
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz":
    from hypothesis.database import DirectoryBasedExampleDatabase

    settings.register_profile(
        "fuzz",
        parent=settings.get_profile("fuzz"),
        database=DirectoryBasedExampleDatabase(str(cache_dir() / "hypothesis")),
    )
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
