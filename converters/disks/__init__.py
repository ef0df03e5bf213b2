"""Disk transfer and conversion engine: VMDK (all vSphere kinds), raw or qcow2 → raw or qcow2.

Local files and vSphere datastores over HTTP(S); sparse, verified, resumable. See engine.py.
"""

from converters.disks.engine import DiskJob, TransferResult, transfer_disks
from converters.disks.sources import HttpSource, LocalSource

__all__ = ["DiskJob", "HttpSource", "LocalSource", "TransferResult", "transfer_disks"]
