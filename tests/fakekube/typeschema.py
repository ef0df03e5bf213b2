"""The built-in types' schemas (the OpenAPI definitions shipped by `kubernetes-validate`), used as the real server
uses its Go types: to drop unknown fields (with a warning, or 400 under fieldValidation=Strict), to reject values of
the wrong JSON type (400, as a decoding error), and to drive strategic merge patch and server-side apply (patch
strategies, merge keys, list types). CRD schemas share the navigation functions (they have no $ref)."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

from .errors import bad_request

Schema = dict[str, Any]


@functools.cache
def _definitions() -> tuple[str, dict[str, Schema], dict[tuple[str, str, str], str]]:
    import kubernetes_validate.utils as kv

    version = kv.latest_version()
    root = Path(kv.__file__).resolve().parent / "kubernetes-json-schema" / f"v{version}-local" / "_definitions.json"
    defs: dict[str, Schema] = json.loads(root.read_text())["$defs"]
    by_gvk: dict[tuple[str, str, str], str] = {}
    for name, schema in defs.items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or []:
            by_gvk[(gvk.get("group", ""), gvk["version"], gvk["kind"])] = name
    return version, defs, by_gvk


def kubernetes_version() -> str:
    """The Kubernetes version whose schemas are used (kubernetes-validate's newest), e.g. '1.37.0'."""
    return _definitions()[0]


def for_kind(group: str, version: str, kind: str) -> Schema | None:
    _v, defs, by_gvk = _definitions()
    name = by_gvk.get((group, version, kind))
    return defs[name] if name else None


def resolve(schema: Schema | None) -> Schema | None:
    while schema is not None and "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = _definitions()[1].get(name)
    return schema


def field(schema: Schema | None, key: str) -> Schema | None:
    schema = resolve(schema)
    if schema is None:
        return None
    props = schema.get("properties")
    if props and key in props:
        return resolve(props[key])
    extra = schema.get("additionalProperties")
    return resolve(extra) if isinstance(extra, dict) else None


def items(schema: Schema | None) -> Schema | None:
    schema = resolve(schema)
    if schema is None or not isinstance(schema.get("items"), dict):
        return None
    return resolve(schema["items"])


def list_keys(schema: Schema | None) -> list[str] | None:
    """Merge keys of a list: strategic-merge `x-kubernetes-patch-merge-key` or apply's `x-kubernetes-list-map-keys`."""
    schema = resolve(schema)
    if schema is None:
        return None
    if schema.get("x-kubernetes-list-type") == "map" and schema.get("x-kubernetes-list-map-keys"):
        return list(schema["x-kubernetes-list-map-keys"])
    if "merge" in (schema.get("x-kubernetes-patch-strategy") or "") and schema.get("x-kubernetes-patch-merge-key"):
        return [schema["x-kubernetes-patch-merge-key"]]
    return None


def patch_merge_key(schema: Schema | None) -> str | None:
    schema = resolve(schema)
    if schema is None or "merge" not in (schema.get("x-kubernetes-patch-strategy") or ""):
        return None
    return schema.get("x-kubernetes-patch-merge-key")


def is_merge_set(schema: Schema | None) -> bool:
    """A list of primitives merged as a set (patchStrategy merge without a key, or list-type set)."""
    schema = resolve(schema)
    if schema is None:
        return False
    if schema.get("x-kubernetes-list-type") == "set":
        return True
    return "merge" in (schema.get("x-kubernetes-patch-strategy") or "") and not schema.get(
        "x-kubernetes-patch-merge-key"
    )


_TYPES_CACHE: dict[int, tuple[Schema, set[str] | None]] = {}


def _types(schema: Schema) -> set[str] | None:
    cached = _TYPES_CACHE.get(id(schema))
    if cached is not None and cached[0] is schema:
        return cached[1]
    types = _compute_types(schema)
    _TYPES_CACHE[id(schema)] = (schema, types)
    return types


def _compute_types(schema: Schema) -> set[str] | None:
    t = schema.get("type")
    if t is None:
        alternatives = schema.get("oneOf") or schema.get("anyOf")
        if alternatives:
            out: set[str] = set()
            for alt in alternatives:
                sub = _compute_types(resolve(alt) or {})
                if sub is None:
                    return None
                out |= sub
            return out
        return None
    return {t} if isinstance(t, str) else set(t)


_GO_TYPES = {
    "object": "map",
    "array": "slice",
    "string": "string",
    "integer": "int",
    "number": "float64",
    "boolean": "bool",
}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "number"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _fits(value: Any, types: set[str]) -> bool:
    if isinstance(value, bool):
        return "boolean" in types
    if isinstance(value, int):
        return bool(types & {"integer", "number"})
    if isinstance(value, float):
        return "number" in types or ("integer" in types and value.is_integer())
    if isinstance(value, str):
        return "string" in types
    if isinstance(value, list):
        return "array" in types
    if isinstance(value, dict):
        return "object" in types
    return True


QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_SUFFIXES = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P", "E"}


def valid_quantity(value: Any) -> bool:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return True
    m = _QUANTITY.match(value) if isinstance(value, str) else None
    if not m:
        return False
    suffix = m.group(2)
    return suffix in _SUFFIXES or bool(re.fullmatch(r"[eE][-+]?[0-9]+", suffix))


def normalize(value: Any, schema: Schema | None, path: str, unknown: list[str], kind: str) -> Any:
    """Drop unknown fields (their paths go to `unknown`) and nulls, reject wrong JSON types and malformed
    quantities with 400, as the typed decoding of the real server."""
    if schema is not None and schema.get("$ref", "").endswith(QUANTITY) and not valid_quantity(value):
        raise bad_request(
            f'{kind} in version "v1" cannot be handled as a {kind}: quantities must match the regular expression '
            f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' (at {path}: {value!r})"
        )
    schema = resolve(schema)
    if schema is None:
        return value
    types = _types(schema)
    if types is not None and value is not None and not _fits(value, types):
        want = sorted(types - {"null"})
        go = _GO_TYPES.get(want[0], want[0]) if want else "unknown"
        raise bad_request(
            f'{kind} in version "v1" cannot be handled as a {kind}: json: cannot unmarshal {_json_type(value)} '
            f"into Go struct field {path or kind} of type {go}"
        )
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        if props is None and not isinstance(extra, dict):
            return value  # free-form (RawExtension, JSON, preserve-unknown-fields)
        if schema.get("x-kubernetes-preserve-unknown-fields") and props is None:
            return value
        for key in list(value):
            sub = props.get(key) if props else None
            if sub is None and isinstance(extra, dict):
                sub = extra
            if sub is None:
                if schema.get("x-kubernetes-preserve-unknown-fields"):
                    continue
                unknown.append(f"{path}.{key}" if path else key)
                del value[key]
                continue
            if value[key] is None:
                del value[key]
                continue
            value[key] = normalize(value[key], sub, f"{path}.{key}" if path else key, unknown, kind)
    elif isinstance(value, list):
        sub = schema.get("items")
        if isinstance(sub, dict):
            return [normalize(v, sub, path, unknown, kind) for v in value if v is not None]
    return value
