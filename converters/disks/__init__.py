"""Disk transfer and conversion engine: VMDK (all vSphere kinds), raw or qcow2 → raw or qcow2.

Local files, members of an OVA, and vSphere datastores over HTTP(S); sparse, digested,
resumable, verified from storage on request. See engine.py. The transfer record is the
engine's: others read it with ``transfer_status`` and drop it with ``discard_transfer``.
"""

from converters.disks.engine import DiskJob, TransferInterrupted, TransferResult, transfer_disks
from converters.disks.inspect import DiskFacts, inspect_local
from converters.disks.sources import HttpSource, LocalSource, TarMemberSource
from converters.disks.state import TransferStatus, discard_transfer, transfer_status
from converters.disks.vmdk import ConfinementError

__all__ = [
    "ConfinementError",
    "DiskFacts",
    "DiskJob",
    "HttpSource",
    "LocalSource",
    "TarMemberSource",
    "TransferInterrupted",
    "TransferResult",
    "TransferStatus",
    "discard_transfer",
    "inspect_local",
    "transfer_disks",
    "transfer_status",
]
