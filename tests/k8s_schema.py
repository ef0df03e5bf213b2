"""Strict validation of manifests against KubeVirt's own OpenAPI schema and the Kubernetes schemas.

KubeVirt's swagger has no ``additionalProperties: false``, so jsonschema alone would accept a
misspelled field; ``validate_kubevirt`` also walks the object and fails on any key the schema
does not define, recursively (through ``$ref``s, arrays and ``additionalProperties``).

    validate_kubevirt(obj, "v1.VirtualMachine")          # or "v1.VirtualMachineInstance", ...
    validate_kubernetes(pvc)                              # built-in kinds, kubernetes-validate strict
    validate_datavolume(dv)                               # CDI DataVolume (see its docstring)
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema

SWAGGER = Path(__file__).resolve().parent.parent.parent / "shared" / "kubevirt" / "swagger.json"
KUBERNETES_VERSION = "1.30"


class SchemaError(AssertionError):
    pass


@functools.cache
def swagger_definitions() -> dict[str, Any]:
    """KubeVirt's swagger definitions, parsed once a process; callers only read them."""
    definitions: dict[str, Any] = json.loads(SWAGGER.read_text())["definitions"]
    return definitions


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = swagger_definitions()[schema["$ref"].removeprefix("#/definitions/")]
    return schema


def unknown_fields(obj: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Every key in ``obj`` that ``schema`` does not define (dotted paths)."""
    schema = _resolve(schema)
    problems: list[str] = []
    if isinstance(obj, dict):
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, value in obj.items():
            where = f"{path}.{key}" if path else key
            if properties is not None and key in properties:
                problems += unknown_fields(value, properties[key], where)
            elif isinstance(extra, dict):
                problems += unknown_fields(value, extra, where)
            elif properties is not None or extra is False:
                problems.append(where)
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(obj):
            problems += unknown_fields(item, schema["items"], f"{path}[{index}]")
    return problems


def validate_kubevirt(obj: dict[str, Any], definition: str = "v1.VirtualMachine") -> None:
    """Raise SchemaError unless ``obj`` validates against KubeVirt's ``definition`` and uses only known fields."""
    if definition not in swagger_definitions():
        raise SchemaError(f"no definition {definition!r} in {SWAGGER}")
    schema = {"$ref": f"#/definitions/{definition}", "definitions": swagger_definitions()}
    errors = sorted(jsonschema.Draft4Validator(schema).iter_errors(obj), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = ".".join(str(p) for p in first.absolute_path)
        raise SchemaError(f"{definition}: {where}: {first.message}")
    unknown = unknown_fields(obj, {"$ref": f"#/definitions/{definition}"})
    if unknown:
        raise SchemaError(f"{definition}: fields not in KubeVirt's schema: {', '.join(unknown)}")


def validate_kubernetes(obj: dict[str, Any], version: str = KUBERNETES_VERSION) -> None:
    """A built-in object (PersistentVolumeClaim, Pod...) against the Kubernetes schema, strict (no unknown fields)."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        raise SchemaError(f"{obj.get('kind')}: {error.message} at {list(error.path)}") from error


def validate_datavolume(obj: dict[str, Any]) -> None:
    """A CDI DataVolume. CDI's CRD is not in kubernetes-validate; KubeVirt's swagger carries CDI's types because
    a VirtualMachine's ``dataVolumeTemplates`` embed them, and a template has the DataVolume's own shape
    (apiVersion, kind, metadata, spec: v1beta1.DataVolumeSpec). So: that schema, strict, plus apiVersion/kind.
    """
    if obj.get("apiVersion") != "cdi.kubevirt.io/v1beta1" or obj.get("kind") != "DataVolume":
        raise SchemaError(f"not a cdi.kubevirt.io/v1beta1 DataVolume: {obj.get('apiVersion')}/{obj.get('kind')}")
    validate_kubevirt(obj, "v1.DataVolumeTemplateSpec")
    spec = obj["spec"]
    if ("pvc" in spec) == ("storage" in spec):
        raise SchemaError("DataVolume: exactly one of spec.pvc and spec.storage")
    if ("source" in spec) == ("sourceRef" in spec):
        raise SchemaError("DataVolume: exactly one of spec.source and spec.sourceRef")
    source = spec.get("source") or {}
    if len(source) != 1:
        raise SchemaError(f"DataVolume: spec.source must name exactly one source, not {sorted(source)}")


def validate_manifest(obj: dict[str, Any]) -> None:
    """Whatever convert writes: dispatch on apiVersion/kind."""
    kind = obj.get("kind")
    if obj.get("apiVersion") == "kubevirt.io/v1":
        validate_kubevirt(obj, f"v1.{kind}")
    elif kind == "DataVolume":
        validate_datavolume(obj)
    else:
        validate_kubernetes(obj)
