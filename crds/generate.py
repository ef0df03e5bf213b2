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
                    "subresources": {"status": {}},
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


def generate(swagger: Path = DEFAULT_SWAGGER) -> dict[str, dict[str, Any]]:
    definitions = json.loads(swagger.read_text())["definitions"]
    return {file: crd(definitions, **args) for file, args in CRDS.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--swagger", type=Path, default=DEFAULT_SWAGGER)
    parser.add_argument("--output-dir", type=Path, default=OUTPUT_DIR)
    args = parser.parse_args()
    for file, obj in generate(args.swagger).items():
        text = "# Generated by crds/generate.py from KubeVirt's swagger.json: do not edit by hand.\n"
        text += yaml.safe_dump(obj, sort_keys=False, width=120)
        (args.output_dir / file).write_text(text)
        print(f"wrote {args.output_dir / file} ({len(text)} bytes)")


if __name__ == "__main__":
    main()
