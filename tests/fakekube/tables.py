"""Server-side printing: `Accept: application/json;as=Table;g=meta.k8s.io;v=v1` gets a meta.k8s.io/v1 Table, as
kubectl asks for; custom resources get their CRD's additionalPrinterColumns, evaluated with a JSONPath subset
(fields, [n], [*], [?(@.key=='value')], the only forms printer columns commonly use)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from .resources import ResourceType

Obj = dict[str, Any]

NAME_COLUMN = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "description": "Name must be unique within a namespace.",
    "priority": 0,
}
AGE_COLUMN = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp", "priority": 0}
_STEP = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+|\*)\]|\[\?\(@\.([A-Za-z0-9_.\-]+)\s*==\s*['\"]([^'\"]*)['\"]\)\]")


def wants_table(accept: str) -> bool:
    return "as=Table" in accept.replace(" ", "")


def json_path(obj: Any, expression: str) -> list[Any]:
    """Values selected by a kubectl-style JSONPath (without the surrounding braces)."""
    expression = expression.strip()
    if expression.startswith("{") and expression.endswith("}"):
        expression = expression[1:-1]
    values = [obj]
    pos = 0
    while pos < len(expression):
        m = _STEP.match(expression, pos)
        if m is None:
            raise ValueError(f"unsupported JSONPath {expression!r} at {expression[pos:]!r}")
        pos = m.end()
        field, index, key, wanted = m.groups()
        out: list[Any] = []
        for value in values:
            if field is not None and isinstance(value, dict) and field in value:
                out.append(value[field])
            elif index == "*" and isinstance(value, list):
                out.extend(value)
            elif index is not None and index != "*" and isinstance(value, list) and int(index) < len(value):
                out.append(value[int(index)])
            elif key is not None and isinstance(value, list):
                out.extend(x for x in value if isinstance(x, dict) and str(_dig(x, key)) == wanted)
        values = out
    return values


def _dig(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def _age(timestamp: str) -> str:
    """kubectl's short age: 45s, 5m, 7h, 3d."""
    try:
        then = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except (TypeError, ValueError):
        return "<invalid>"
    seconds = max(int((datetime.now(UTC) - then).total_seconds()), 0)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 2 * 3600:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _cell(obj: Obj, column: Obj) -> Any:
    values = json_path(obj, column["jsonPath"])
    if not values:
        return None
    if column.get("type") == "date":
        return _age(values[0])
    if len(values) == 1:
        return values[0]
    return ",".join(str(v) for v in values)


def table(rt: ResourceType, objects: list[Obj], resource_version: str) -> Obj:
    columns = [AGE_COLUMN] if not rt.printer_columns else rt.printer_columns
    definitions = [NAME_COLUMN] + [
        {
            "name": c["name"],
            "type": c.get("type", "string"),
            "format": c.get("format", ""),
            "description": c.get("description", ""),
            "priority": c.get("priority", 0),
        }
        for c in columns
    ]
    rows = []
    for obj in objects:
        rows.append(
            {
                "cells": [obj["metadata"]["name"], *(_cell(obj, c) for c in columns)],
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj["metadata"],
                },
            }
        )
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    }
