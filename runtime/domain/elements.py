"""What every device-family module of the translation shares: refusing unknown fields, building elements."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from core.quantity import parse_quantity as quantity
from runtime.domain.model import UnsupportedSpecError


def parse_quantity(value: Any, field_path: str) -> int:
    """A Kubernetes resource quantity ("1Gi", "512M", 1073741824) in bytes."""
    try:
        return quantity(value)
    except ValueError:
        raise UnsupportedSpecError(field_path, f"not a resource quantity: {value!r}") from None


def unknown(data: Mapping[str, Any], known: set[str], path: str) -> None:
    for key, value in data.items():
        if key not in known and value not in (None, {}, [], False):
            raise UnsupportedSpecError(f"{path}.{key}", "not supported by this runtime")


def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, {k.rstrip("_"): v for k, v in attrs.items()})
    if text is not None:
        element.text = text
    return element
