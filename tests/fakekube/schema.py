"""CRD structural schemas: pruning of unknown fields, defaulting, and validation with `jsonschema`,
in the order the real server applies them (prune nulls and unknowns, default, validate)."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema

PRESERVE = "x-kubernetes-preserve-unknown-fields"


def _preserves(schema: dict[str, Any]) -> bool:
    return bool(schema.get(PRESERVE)) or bool(schema.get("x-kubernetes-embedded-resource") and schema.get(PRESERVE))


def prune(
    value: Any, schema: dict[str, Any] | None, *, root: bool = False, path: str = "", unknown: list[str] | None = None
) -> Any:
    """Drop fields the schema does not know (their paths go to `unknown`), and nulls where the schema says neither
    nullable nor default."""
    if schema is None:
        return value
    if isinstance(value, dict):
        props = schema.get("properties")
        additional = schema.get("additionalProperties")
        preserve = _preserves(schema)
        embedded = schema.get("x-kubernetes-embedded-resource")
        for key in list(value):
            if (root or embedded) and key in ("apiVersion", "kind", "metadata"):
                continue
            sub: dict[str, Any] | None = None
            if props is not None and key in props:
                sub = props[key]
            elif isinstance(additional, dict):
                sub = additional
            elif additional is True or preserve:
                continue
            else:
                if unknown is not None:
                    unknown.append(f"{path}.{key}" if path else key)
                del value[key]
                continue
            if value[key] is None and not sub.get("nullable") and "default" not in sub:
                del value[key]
                continue
            value[key] = prune(value[key], sub, path=f"{path}.{key}" if path else key, unknown=unknown)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            return [prune(v, items, path=path, unknown=unknown) for v in value]
    return value


def apply_defaults(value: Any, schema: dict[str, Any] | None) -> Any:
    if schema is None:
        return value
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = apply_defaults(value[key], sub)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key in value:
                if key not in (schema.get("properties") or {}):
                    value[key] = apply_defaults(value[key], additional)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(v, schema["items"]) for v in value]
    return value


_PASS = (
    "enum",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "multipleOf",
    "minProperties",
    "maxProperties",
    "required",
)


def to_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI v3 (Kubernetes dialect) -> JSON Schema draft 4."""
    out: dict[str, Any] = {k: schema[k] for k in _PASS if k in schema}
    if schema.get("x-kubernetes-int-or-string"):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    elif "type" in schema:
        types = [schema["type"]]
        if schema["type"] == "number":
            types = ["number"]
        if schema.get("nullable"):
            types.append("null")
        out["type"] = types if len(types) > 1 else types[0]
    elif schema.get("nullable") is False:
        pass
    if "properties" in schema:
        out["properties"] = {k: to_json_schema(v) for k, v in schema["properties"].items()}
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = to_json_schema(schema["additionalProperties"])
    if isinstance(schema.get("items"), dict):
        out["items"] = to_json_schema(schema["items"])
    for comb in ("allOf", "anyOf", "oneOf"):
        if comb in schema:
            existing = out.get(comb, [])
            subs = [to_json_schema(s) for s in schema[comb]]
            if existing:
                out.setdefault("allOf", []).append({comb: subs})
            else:
                out[comb] = subs
    if "not" in schema:
        out["not"] = to_json_schema(schema["not"])
    if schema.get("type") == "object" and schema.get("x-kubernetes-embedded-resource"):
        out.setdefault("required", [])
        out["required"] = sorted(set(out["required"]) | {"apiVersion", "kind"})
    return out


class CrdSchema:
    """A compiled structural schema of one CRD version."""

    def __init__(self, openapi: dict[str, Any] | None) -> None:
        self.openapi = copy.deepcopy(openapi) if openapi else None
        self._validator: jsonschema.Draft4Validator | None = None
        self._status_validator: jsonschema.Draft4Validator | None = None
        if self.openapi is not None:
            top = to_json_schema(self.openapi)
            # The server validates metadata itself: a CRD schema may only restrict name/generateName.
            top.get("properties", {}).pop("metadata", None)
            if "required" in top:
                top["required"] = [r for r in top["required"] if r not in ("metadata", "apiVersion", "kind")]
            self._validator = jsonschema.Draft4Validator(top)
            status = (top.get("properties") or {}).get("status")
            # Status-only writes (the bulk of a controller's) revalidate just the status.
            self._status_validator = jsonschema.Draft4Validator(
                {"type": "object", "properties": {"status": status} if status else {}}
            )

    def normalize(
        self, obj: dict[str, Any], unknown: list[str] | None = None, *, status_only: bool = False
    ) -> dict[str, Any]:
        """Prune and default, in place; returns obj. status_only: the rest is unchanged and already normalized."""
        if self.openapi is None:
            return obj
        if status_only:
            status_schema = (self.openapi.get("properties") or {}).get("status")
            if status_schema is None:
                if "status" in obj and not _preserves(self.openapi):
                    if unknown is not None:
                        unknown.append("status")
                    del obj["status"]
            elif obj.get("status") is not None:
                obj["status"] = prune(obj["status"], status_schema, path="status", unknown=unknown)
                obj["status"] = apply_defaults(obj["status"], status_schema)
            return obj
        prune(obj, self.openapi, root=True, unknown=unknown)
        apply_defaults(
            obj,
            {
                **self.openapi,
                "properties": {k: v for k, v in (self.openapi.get("properties") or {}).items() if k != "metadata"},
            },
        )
        return obj

    def errors(self, obj: dict[str, Any], *, status_only: bool = False) -> list[tuple[str, str, str]]:
        """(reason, field, message) tuples in the real server's style: `spec.running: Invalid value: ...`.
        status_only: everything but the status is unchanged from a valid stored object."""
        validator = self._status_validator if status_only else self._validator
        if validator is None:
            return []
        body = {k: v for k, v in obj.items() if k != "metadata"} if not status_only else {"status": obj.get("status")}
        if status_only and body["status"] is None:
            return []
        out = []
        for err in sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.absolute_path))):
            path = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in err.absolute_path).replace(
                ".[", "["
            )
            if err.validator == "required":
                missing = err.message.split("'")[1] if "'" in err.message else err.message
                field = f"{path}.{missing}" if path else missing
                out.append(("FieldValueRequired", field, "Required value"))
            elif err.validator == "enum":
                allowed = ", ".join(json.dumps(v) for v in err.validator_value)
                out.append(
                    (
                        "FieldValueNotSupported",
                        path,
                        f"Unsupported value: {json.dumps(err.instance)}: supported values: {allowed}",
                    )
                )
            elif err.validator == "type":
                want = err.validator_value if isinstance(err.validator_value, str) else err.validator_value[0]
                out.append(
                    (
                        "FieldValueTypeInvalid",
                        path,
                        f"Invalid value: {_short(err.instance)}: "
                        f"{path} in body must be of type {want}: {_short(err.instance)}",
                    )
                )
            else:
                out.append(("FieldValueInvalid", path, f"Invalid value: {_short(err.instance)}: {err.message}"))
        return out


def _short(value: Any) -> str:
    text = json.dumps(value)
    if isinstance(value, (dict, list)):
        return '"object"' if isinstance(value, dict) else '"array"'
    return text if len(text) < 80 else text[:77] + "..."


_TYPES = {"object", "array", "string", "integer", "number", "boolean"}
_SUPPORTED_TYPES = ", ".join(f'"{t}"' for t in sorted(_TYPES))
_FORBIDDEN = ("$ref", "$schema", "id", "definitions", "additionalItems", "patternProperties", "dependencies")
_NOT_IN_JUNCTORS = ("type", "default", "additionalProperties", "nullable", "description")


def structural_errors(
    schema: Any, path: str, *, root: bool = True, in_junctor: bool = False
) -> list[tuple[str, str, str]]:
    """The apiextensions checks of a CRD version's openAPIV3Schema: a structural schema, without the
    unsupported keywords. (reason, field, message) tuples as the real server's 422 causes."""
    out: list[tuple[str, str, str]] = []
    if not isinstance(schema, dict):
        return [("FieldValueInvalid", path, "Invalid value: must be an object")]
    for key in _FORBIDDEN:
        if key in schema:
            out.append(("FieldValueForbidden", f"{path}.{key}", f"Forbidden: {key} is not supported"))
    if schema.get("uniqueItems") is True:
        out.append(
            (
                "FieldValueForbidden",
                f"{path}.uniqueItems",
                "Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
            )
        )
    int_or_string = schema.get("x-kubernetes-int-or-string") is True
    preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
    type_ = schema.get("type")
    if in_junctor:
        for key in _NOT_IN_JUNCTORS:
            if key in schema and not (key == "type" and type_ in ("integer", "string")):
                out.append(
                    (
                        "FieldValueForbidden",
                        f"{path}.{key}",
                        "Forbidden: must not be used inside allOf, anyOf, oneOf or not",
                    )
                )
    elif type_ is None:
        if not int_or_string and not preserve:
            out.append(
                ("FieldValueRequired", f"{path}.type", "Required value: must not be empty for specified object fields")
            )
    elif not isinstance(type_, str) or type_ not in _TYPES:
        out.append(
            (
                "FieldValueNotSupported",
                f"{path}.type",
                f"Unsupported value: {json.dumps(type_)}: supported values: {_SUPPORTED_TYPES}",
            )
        )
    elif int_or_string:
        out.append(
            ("FieldValueInvalid", f"{path}.type", "Invalid value: must be empty if x-kubernetes-int-or-string is true")
        )
    if root and type_ != "object":
        out.append(
            ("FieldValueInvalid", f"{path}.type", f"Invalid value: {json.dumps(type_)}: must be object at the root")
        )
    if (
        "properties" in schema
        and isinstance(schema.get("additionalProperties"), (dict, bool))
        and schema.get("additionalProperties") is not False
    ):
        out.append(
            (
                "FieldValueForbidden",
                f"{path}.additionalProperties",
                "Forbidden: additionalProperties and properties are mutual exclusive",
            )
        )
    if type_ == "array" and not in_junctor and not isinstance(schema.get("items"), dict):
        out.append(("FieldValueRequired", f"{path}.items", "Required value: must be specified"))
    for name, sub in (schema.get("properties") or {}).items():
        if root and name == "metadata" and isinstance(sub, dict):
            extra = set(sub.get("properties") or {}) - {"name", "generateName"}
            if extra or (set(sub) - {"type", "properties", "description"}):
                out.append(
                    (
                        "FieldValueForbidden",
                        f"{path}.properties[metadata]",
                        "Forbidden: must not specify anything other than name and generateName, "
                        "but metadata is implicitly specified",
                    )
                )
            continue
        out += structural_errors(sub, f"{path}.properties[{name}]", root=False, in_junctor=in_junctor)
    if isinstance(schema.get("additionalProperties"), dict):
        out += structural_errors(
            schema["additionalProperties"], f"{path}.additionalProperties", root=False, in_junctor=in_junctor
        )
    if isinstance(schema.get("items"), dict):
        out += structural_errors(schema["items"], f"{path}.items", root=False, in_junctor=in_junctor)
    elif isinstance(schema.get("items"), list):
        out.append(
            ("FieldValueForbidden", f"{path}.items", "Forbidden: items must be a schema object and not an array")
        )
    for junctor in ("allOf", "anyOf", "oneOf"):
        for i, sub in enumerate(schema.get(junctor) or []):
            out += structural_errors(sub, f"{path}.{junctor}[{i}]", root=False, in_junctor=True)
    if isinstance(schema.get("not"), dict):
        out += structural_errors(schema["not"], f"{path}.not", root=False, in_junctor=True)
    if schema.get("x-kubernetes-list-type") == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        if not keys:
            out.append(
                (
                    "FieldValueRequired",
                    f"{path}.x-kubernetes-list-map-keys",
                    "Required value: must not be empty if x-kubernetes-list-type is map",
                )
            )
        if items.get("type") != "object":
            out.append(
                (
                    "FieldValueInvalid",
                    f"{path}.items.type",
                    "Invalid value: must be object if parent array's x-kubernetes-list-type is map",
                )
            )
        for key in keys:
            prop = (items.get("properties") or {}).get(key)
            if prop is None:
                out.append(
                    (
                        "FieldValueRequired",
                        f"{path}.items.properties[{key}]",
                        "Required value: entries for all x-kubernetes-list-map-keys are required",
                    )
                )
            elif key not in (items.get("required") or []) and "default" not in prop:
                out.append(
                    (
                        "FieldValueRequired",
                        f"{path}.items.required",
                        f"Required value: all map keys must be required or have a default value: {key}",
                    )
                )
    return out
