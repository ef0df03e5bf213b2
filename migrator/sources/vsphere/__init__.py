"""The vSphere source (``vsphere://user@host[:port][/datacenter]``), through pyvmomi.

- ``connection``: location, TLS policy (verify / --insecure / --thumbprint), login errors.
- ``collector``: one ContainerView + one paged PropertyCollector retrieval for the estate.
- ``translate``: pure translation of the retrieved records into the inventory model.
- ``operations``: power, guest shutdown, mark as migrated (cutover).
- ``source``: ``VSphereSource``, tying them together.
"""

from __future__ import annotations

from migrator.sources.vsphere.operations import ToolsNotRunningError
from migrator.sources.vsphere.source import VSphereSource, open_vsphere, split_datastore_path

__all__ = ["ToolsNotRunningError", "VSphereSource", "open_vsphere", "split_datastore_path"]
