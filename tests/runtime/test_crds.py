"""Our CRDs: generated from KubeVirt's swagger, a strict subset of it, served by the fake API server,
and they accept what ``converters.specs`` writes."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from runtime.deploy import crd_paths
from tests.fakekube import TOKEN, FakeApiServer
from tests.k8s_schema import SWAGGER, swagger_definitions, validate_kubevirt

PROJECT = Path(__file__).resolve().parents[2]
VM_CRD, VMI_CRD, _MIGRATION_CRD = crd_paths()  # package data: runtime/deploy/crds/ (the Migration CRD: tests/migrate)
CRDS = {"VirtualMachine": VM_CRD, "VirtualMachineInstance": VMI_CRD}


def load(kind: str) -> dict[str, Any]:
    return yaml.safe_load(CRDS[kind].read_text())


def paths(schema: dict[str, Any], prefix: str = "") -> list[str]:
    found = []
    for key, sub in (schema.get("properties") or {}).items():
        found.append(f"{prefix}.{key}")
        found += paths(sub, f"{prefix}.{key}")
    if isinstance(schema.get("items"), dict):
        found += paths(schema["items"], prefix + "[]")
    if isinstance(schema.get("additionalProperties"), dict):
        found += paths(schema["additionalProperties"], prefix + ".*")
    return found


def swagger_has(path: str, definition: str) -> bool:
    definitions = swagger_definitions()  # parsed once: there are 300+ paths to look up
    schema: dict[str, Any] = {"$ref": f"#/definitions/{definition}"}
    for part in path.replace("[]", ".[]").strip(".").split("."):
        while "$ref" in schema:
            schema = definitions[schema["$ref"].removeprefix("#/definitions/")]
        if part == "[]":
            schema = schema.get("items") or {}
        elif part == "*":
            schema = schema.get("additionalProperties") or {}
        elif part in (schema.get("properties") or {}):
            schema = schema["properties"][part]
        else:
            return False
    return True


@pytest.mark.parametrize("kind", CRDS)
def test_every_path_of_our_schema_is_in_kubevirts(kind: str) -> None:
    schema = load(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    all_paths = paths(schema)
    assert len(all_paths) > 300  # the real thing, not a stub
    missing = [p for p in all_paths if not swagger_has(p, f"v1.{kind}")]
    assert missing == []


def test_schema_is_derived_by_the_generator() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("crds_generate", PROJECT / "crds" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    generated = module.generate(SWAGGER)
    for path in CRDS.values():
        assert generated[path.name] == yaml.safe_load(path.read_text()), f"{path.name} is stale: run crds/generate.py"


def test_crd_names_columns_and_status_subresource() -> None:
    vm, vmi = load("VirtualMachine"), load("VirtualMachineInstance")
    assert vm["spec"]["names"]["shortNames"] == ["vm", "vms"]
    assert vmi["spec"]["names"]["shortNames"] == ["vmi", "vmis"]
    for crd in (vm, vmi):
        version = crd["spec"]["versions"][0]
        assert crd["spec"]["group"] == "kubevirt.io" and version["name"] == "v1"
    # As KubeVirt's virt-operator defines them: the VM's status is a subresource, the instance's is not.
    assert vm["spec"]["versions"][0]["subresources"] == {"status": {}}
    assert "subresources" not in vmi["spec"]["versions"][0]
    assert [c["name"] for c in vm["spec"]["versions"][0]["additionalPrinterColumns"]] == ["Age", "Status", "Ready"]
    assert "NodeName" in [c["name"] for c in vmi["spec"]["versions"][0]["additionalPrinterColumns"]]


def converted_vm() -> dict[str, Any]:
    from converters.specs import vm_manifests
    from tests.specs.builders import plan_of, planned

    vm = planned()
    return vm_manifests(vm, plan_of(vm)).virtual_machine


def test_converted_manifest_is_accepted_by_our_crds_and_kubevirt(tmp_path: Path) -> None:
    manifest = converted_vm()
    validate_kubevirt(manifest, "v1.VirtualMachine")
    with FakeApiServer(crds=list(CRDS.values())) as api:
        client = kubernetes.config.new_client_from_config(str(api.kubeconfig(tmp_path / "kubeconfig")))
        namespace = manifest["metadata"]["namespace"]
        kubernetes.client.CoreV1Api(client).create_namespace({"metadata": {"name": namespace}})
        custom = kubernetes.client.CustomObjectsApi(client)
        # Strict: a field our schema prunes would be an error, not a silent drop.
        created = custom.create_namespaced_custom_object(
            "kubevirt.io", "v1", namespace, "virtualmachines", manifest, field_validation="Strict"
        )
        assert created["spec"] == manifest["spec"]
        bad = json.loads(json.dumps(manifest))
        bad["metadata"]["name"] = "bad"
        bad["spec"]["template"]["spec"]["domain"]["cpu"]["cores"] = "four"
        with pytest.raises(kubernetes.client.ApiException) as error:
            custom.create_namespaced_custom_object("kubevirt.io", "v1", namespace, "virtualmachines", bad)
        assert error.value.status == 422
        # Printer columns as kubectl gets them (a meta.k8s.io Table).
        custom.patch_namespaced_custom_object_status(
            "kubevirt.io",
            "v1",
            namespace,
            "virtualmachines",
            manifest["metadata"]["name"],
            {"status": {"printableStatus": "Stopped", "conditions": [{"type": "Ready", "status": "False"}]}},
        )
        request = urllib.request.Request(
            f"{api.url}/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachines",
            headers={"Authorization": f"Bearer {TOKEN}", "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        )
        with urllib.request.urlopen(request) as response:
            table = json.loads(response.read())
        assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Age", "Status", "Ready"]
        assert table["rows"][0]["cells"][0] == manifest["metadata"]["name"]
        assert table["rows"][0]["cells"][2:] == ["Stopped", "False"]
