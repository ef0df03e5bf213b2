"""Migrate an estate: many VMs of a plan per run, in waves, under concurrency and bandwidth limits.

``selection`` (which VMs, in which waves), ``scheduler`` (VMs in flight, disks per ESXi host),
``meter`` (the shared bandwidth bucket, each VM's byte count and stop check), ``cancel`` (requests
from another shell), ``worker`` (one VM through the cutover pipeline), ``coordinator`` (the run),
``progress`` (live view, JSON lines, plain lines), ``summary`` (outcomes, the table, the exit status).
"""

from migrator.migrate.coordinator import MigrateRequest, migrate

__all__ = ["MigrateRequest", "migrate"]
