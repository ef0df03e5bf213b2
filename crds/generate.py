"""Generate our CRDs' schemas from KubeVirt's own OpenAPI (swagger) definitions.

    python crds/generate.py [--swagger ../shared/kubevirt/swagger.json]

writes ``runtime/deploy/crds/*.yaml`` (package data; ``crds/*.yaml`` link to them).

The swagger's ``v1.VirtualMachine`` and ``v1.VirtualMachineInstance`` are converted into a
structural schema (what apiextensions.k8s.io/v1 requires): ``$ref``s are inlined, Kubernetes
``IntOrString`` and ``Quantity`` become ``x-kubernetes-int-or-string``, embedded ObjectMeta keeps
only what a template may carry, descriptions and defaults are dropped, and the features this runtime
does not run (``DROPPED``) are left out. Every path of the result is therefore a path of KubeVirt's
schema (``tests/runtime/test_crds.py`` checks it). Statuses keep unknown fields, since kopf stores
its progress there.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent
DEFAULT_SWAGGER = ROOT.parent.parent / "shared" / "kubevirt" / "swagger.json"
OUTPUT_DIR = ROOT.parent / "runtime" / "deploy" / "crds"  # package data: the installed package ships them

INT_OR_STRING = {
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString",
    "k8s.io.apimachinery.pkg.api.resource.Quantity",
}
OBJECT_META = "k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta"
TIME = "k8s.io.apimachinery.pkg.apis.meta.v1.Time"

# Spec paths (dotted, from the object's root) this runtime does not honour: left out of our schema,
# so the API server prunes them rather than accepting something that would silently not happen.
DROPPED = {
    "spec.instancetype",
    "spec.preference",
    "spec.dataVolumeTemplates",
    "spec.liveUpdateFeatures",
    "spec.updateVolumesStrategy",
    "spec.template.spec.accessCredentials",
    "spec.template.spec.domain.devices.gpus",
    "spec.template.spec.domain.devices.hostDevices",
    "spec.template.spec.domain.devices.filesystems",
    "spec.template.spec.domain.devices.downwardMetrics",
    "spec.template.spec.domain.launchSecurity",
    "spec.template.spec.resourceClaims",
    "spec.domain.devices.gpus",
    "spec.domain.devices.hostDevices",
    "spec.domain.devices.filesystems",
    "spec.domain.devices.downwardMetrics",
    "spec.domain.launchSecurity",
    "spec.accessCredentials",
    "spec.resourceClaims",
}


class Converter:
    def __init__(self, definitions: dict[str, Any]) -> None:
        self.definitions = definitions

    def convert(self, schema: dict[str, Any], path: str, stack: tuple[str, ...] = ()) -> dict[str, Any]:
        if "$ref" in schema:
            name = schema["$ref"].removeprefix("#/definitions/")
            if name in INT_OR_STRING:
                return {"x-kubernetes-int-or-string": True}
            if name == TIME:
                return {"type": "string", "format": "date-time"}
            if name == OBJECT_META:
                # An embedded template's metadata: the API server keeps only these fields.
                return {
                    "type": "object",
                    "properties": {
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                        "name": {"type": "string"},
                        "namespace": {"type": "string"},
                    },
                }
            if name in stack:
                # A recursive type (none in the parts we keep, but stay safe): keep what comes.
                return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
            return self.convert(self.definitions[name], path, (*stack, name))
        out: dict[str, Any] = {}
        kind = schema.get("type")
        if isinstance(kind, list):  # e.g. ["string", "null"]: structural schemas take one type
            kind = next((k for k in kind if k != "null"), None)
        if kind == "object" or "properties" in schema:
            out["type"] = "object"
            properties = {}
            for key, sub in sorted((schema.get("properties") or {}).items()):
                where = f"{path}.{key}" if path else key
                if where in DROPPED:
                    continue
                properties[key] = self.convert(sub, where, stack)
            if properties:
                out["properties"] = properties
            if isinstance(schema.get("additionalProperties"), dict):
                out["additionalProperties"] = self.convert(schema["additionalProperties"], f"{path}.*", stack)
            if not properties and "additionalProperties" not in out:
                out["x-kubernetes-preserve-unknown-fields"] = True
            required = [r for r in schema.get("required", []) if r in properties]
            if required:
                out["required"] = required
        elif kind == "array":
            out["type"] = "array"
            out["items"] = self.convert(schema.get("items") or {}, f"{path}[]", stack)
        elif kind in {"string", "integer", "number", "boolean"}:
            out["type"] = kind
            if "format" in schema and kind in {"integer", "number"}:
                out["format"] = schema["format"]
            if "enum" in schema:
                out["enum"] = schema["enum"]
        else:
            out = {"x-kubernetes-preserve-unknown-fields": True}
        return out


def crd_schema(definitions: dict[str, Any], definition: str) -> dict[str, Any]:
    top = definitions[definition]
    converter = Converter(definitions)
    spec = converter.convert(top["properties"]["spec"], "spec")
    status = converter.convert(top["properties"]["status"], "status")
    status["x-kubernetes-preserve-unknown-fields"] = True
    return {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }


def crd(definitions: dict[str, Any], *, kind: str, plural: str, singular: str, short: list[str]) -> dict[str, Any]:
    if kind == "VirtualMachine":
        columns = [
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            {"name": "Status", "type": "string", "jsonPath": ".status.printableStatus"},
            {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type=='Ready')].status"},
        ]
    else:
        columns = [
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "IP", "type": "string", "jsonPath": ".status.interfaces[0].ipAddress"},
            {"name": "NodeName", "type": "string", "jsonPath": ".status.nodeName"},
            {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type=='Ready')].status"},
        ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.kubevirt.io",
            "labels": {"app.kubernetes.io/part-of": "migrator-runtime", "app.kubernetes.io/managed-by": "migrator"},
            "annotations": {"migrator.io/generated-from": "kubevirt swagger.json v1." + kind},
        },
        "spec": {
            "group": "kubevirt.io",
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": singular,
                "shortNames": short,
                "categories": ["all"],
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    # KubeVirt's VirtualMachine has a status subresource, its VirtualMachineInstance does not
                    # (virt-operator's crds.go): an instance's labels and status are written in one call.
                    **({"subresources": {"status": {}}} if kind == "VirtualMachine" else {}),
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": crd_schema(definitions, f"v1.{kind}")},
                }
            ],
        },
    }


CRDS = {
    "virtualmachines.kubevirt.io.yaml": {
        "kind": "VirtualMachine",
        "plural": "virtualmachines",
        "singular": "virtualmachine",
        "short": ["vm", "vms"],
    },
    "virtualmachineinstances.kubevirt.io.yaml": {
        "kind": "VirtualMachineInstance",
        "plural": "virtualmachineinstances",
        "singular": "virtualmachineinstance",
        "short": ["vmi", "vmis"],
    },
}


def _obj(properties: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, **extra}
    if required:
        schema["required"] = required
    return schema


_STR: dict[str, Any] = {"type": "string"}
_NAME: dict[str, Any] = {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253}
_INT: dict[str, Any] = {"type": "integer", "minimum": 0}
_BYTES = _obj({"completed": _INT, "total": _INT})


def migration_schema() -> dict[str, Any]:
    """``migrator.io/v1alpha1`` Migration: the estate-wide `migrate` as a resource (our own API, no swagger)."""
    plan = _obj(
        {
            "inline": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "configMapRef": _obj({"name": _NAME, "key": {"type": "string", "default": "plan.yaml"}}, ["name"]),
        },
        description="The plan (what `migrator plan` writes): inline, or a ConfigMap holding it.",
        maxProperties=1,
        minProperties=1,
    )
    spec = _obj(
        {
            "plan": plan,
            "sourceSecretRef": _obj(
                {"name": _NAME, "key": {"type": "string", "default": "password"}},
                ["name"],
                description="The Secret holding the source's password: credentials are never in this resource.",
            ),
            "targetNamespace": _NAME,
            "vms": {"type": "array", "items": {"type": "string", "minLength": 1}, "description": "Names or globs."},
            "maxInFlight": {"type": "integer", "minimum": 1, "default": 4},
            "maxRate": {
                "type": "string",
                "pattern": "^[0-9]+(\\.[0-9]+)?\\s*([kKmMgG]i?)?[bB]?(/s)?$",
                "description": "Bandwidth of all the VMs' transfers together, e.g. 200MiB/s.",
            },
            "cutover": {"type": "string", "format": "date-time", "description": "Start no VM before this time."},
            "type": {
                "type": "string",
                "enum": ["cold", "warm"],
                "default": "cold",
                "description": "warm is not supported in a Migration yet: refused (condition WarmNotSupported).",
            },
            "cancel": {"type": "array", "items": {"type": "string", "minLength": 1}},
            "backoffLimit": {"type": "integer", "minimum": 0, "maximum": 10, "default": 2},
            "image": _STR,
        },
        ["plan", "sourceSecretRef"],
    )
    step = _obj({"name": _STR, "phase": _STR, "progress": _BYTES, "error": _STR})
    vm = _obj(
        {
            "name": _STR,
            "phase": _STR,
            "job": _STR,
            "attempts": _INT,
            "started": _STR,
            "completed": _STR,
            "error": _STR,
            "steps": {"type": "array", "items": step},
        }
    )
    status = _obj(
        {
            "phase": _STR,
            "vms": {"type": "array", "items": vm},
            "conditions": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
        },
        **{"x-kubernetes-preserve-unknown-fields": True},
    )
    return _obj(
        {"apiVersion": _STR, "kind": _STR, "metadata": {"type": "object"}, "spec": spec, "status": status}, ["spec"]
    )


def migration_crd() -> dict[str, Any]:
    columns = [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": "migrations.migrator.io",
            "labels": {"app.kubernetes.io/part-of": "migrator-runtime", "app.kubernetes.io/managed-by": "migrator"},
        },
        "spec": {
            "group": "migrator.io",
            "scope": "Namespaced",
            "names": {
                "kind": "Migration",
                "listKind": "MigrationList",
                "plural": "migrations",
                "singular": "migration",
                "shortNames": ["mig"],
            },
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": migration_schema()},
                }
            ],
        },
    }


def generate(swagger: Path = DEFAULT_SWAGGER) -> dict[str, dict[str, Any]]:
    definitions = json.loads(swagger.read_text())["definitions"]
    generated = {file: crd(definitions, **args) for file, args in CRDS.items()}
    generated[MIGRATION_CRD] = migration_crd()
    return generated


MIGRATION_CRD = "migrations.migrator.io.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--swagger", type=Path, default=DEFAULT_SWAGGER)
    parser.add_argument("--output-dir", type=Path, default=OUTPUT_DIR)
    args = parser.parse_args()
    for file, obj in generate(args.swagger).items():
        origin = "this file's migration_schema()" if file == MIGRATION_CRD else "KubeVirt's swagger.json"
        text = f"# Generated by crds/generate.py from {origin}: do not edit by hand.\n"
        text += yaml.safe_dump(obj, sort_keys=False, width=120)
        (args.output_dir / file).write_text(text)
        print(f"wrote {args.output_dir / file} ({len(text)} bytes)")


if __name__ == "__main__":
    main()
