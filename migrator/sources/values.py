"""The value helpers the file sources share (VMX ``key = "value"`` entries, OVF ``vmw:Config`` values).

Both formats spell booleans and numbers as text and name device models VMware's way; one set of
readers keeps a VM read from a .vmx and the same VM read from its OVF export alike.
"""

from __future__ import annotations

from core.errors import InputError

# VMware's device model names → the inventory's (an unknown name is kept as it is).
SCSI_MODEL_ALIASES = {"virtualscsi": "pvscsi", "lsilogicsas": "lsisas1068"}
NIC_MODEL_ALIASES = {"vlance": "pcnet32", "sriovethernetcard": "sriov"}


def flag(value: str | None) -> bool:
    """'TRUE' / 'yes' / '1' / 'on' → True; anything else, or nothing, → False."""
    return (value or "").strip().lower() in ("true", "yes", "1", "on")


def optional_flag(value: str | None) -> bool | None:
    """As ``flag``, but None when the value is not given at all (unknown, not False)."""
    return None if value is None else flag(value)


def integer(value: str | None, default: int, what: str) -> int:
    """A decimal or 0x-hexadecimal number; ``default`` when empty; InputError "<what> is not a number"."""
    if value is None or value.strip() == "":
        return default
    text = value.strip()
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        raise InputError(f"{what} is not a number") from None


def scsi_model(name: str) -> str:
    return SCSI_MODEL_ALIASES.get(name, name)


def nic_model(name: str) -> str:
    return NIC_MODEL_ALIASES.get(name, name)
