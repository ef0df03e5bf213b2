"""The runtime's deployment: manifests valid against the Kubernetes schemas, least-privilege RBAC proven
on the fake API server, ``migrator runtime install|uninstall|vm`` through the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kubernetes
import pytest
import yaml

from runtime.deploy import crd_paths, deployment, manifests
from tests.fakekube import FakeApiServer
from tests.k8s_schema import validate_kubernetes
from tests.runtime.cluster_env import spawn_module
from tests.runtime.guest_layout import vm_manifest

PROJECT = Path(__file__).resolve().parents[2]


CRD_FILES = crd_paths()


def deploy_docs() -> list[dict]:
    return deployment()


def test_every_manifest_validates_against_kubernetes_schemas() -> None:
    kinds = set()
    for doc in deploy_docs():
        validate_kubernetes(doc)
        kinds.add(doc["kind"])
    assert {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "DaemonSet"} <= kinds
    for path in CRD_FILES:
        validate_kubernetes(yaml.safe_load(path.read_text()))


def cli(*args: str) -> tuple[int, str]:
    """The real entry point in a process: exit status and stdout+stderr."""
    done = subprocess.run(
        [sys.executable, "-c", "from migrator.cli import main; main()", *args],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout + done.stderr


def test_install_vm_requests_and_uninstall(tmp_path: Path) -> None:
    with FakeApiServer() as api:
        kubeconfig = str(api.kubeconfig(tmp_path / "kubeconfig"))
        code, out = cli("runtime", "install", "--kubeconfig", kubeconfig)
        assert code == 0, out
        assert "applied DaemonSet/migrator-handler" in out
        assert [d["metadata"]["name"] for d in api.objects("daemonsets", "migrator-runtime")] == ["migrator-handler"]
        assert len(api.objects("customresourcedefinitions")) == 3  # VirtualMachine, VirtualMachineInstance, Migration
        code, out = cli("runtime", "install", "--kubeconfig", kubeconfig)  # idempotent
        assert code == 0, out

        client = kubernetes.config.new_client_from_config(kubeconfig)
        custom = kubernetes.client.CustomObjectsApi(client)
        custom.create_namespaced_custom_object(
            "kubevirt.io", "v1", "default", "virtualmachines", vm_manifest("web", "web-disk0")
        )
        assert cli("runtime", "vm", "stop", "web", "--kubeconfig", kubeconfig)[0] == 0
        vm = custom.get_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachines", "web")
        assert vm["spec"]["runStrategy"] == "Halted"
        assert cli("runtime", "vm", "restart", "web", "--kubeconfig", kubeconfig)[0] == 0
        vm = custom.get_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachines", "web")
        assert "migrator.io/restart-requested" in vm["metadata"]["annotations"]
        code, out = cli("runtime", "vm", "pause", "web", "--kubeconfig", kubeconfig)
        assert code != 0 and out.count("\n") == 1 and "no VirtualMachineInstance default/web" in out
        code, out = cli("runtime", "vm", "start", "nothere", "--kubeconfig", kubeconfig)
        assert code != 0 and "no VirtualMachine default/nothere" in out

        code, out = cli("runtime", "uninstall", "--kubeconfig", kubeconfig)
        assert code == 0, out
        assert api.objects("daemonsets", "migrator-runtime") == []
        assert len(api.objects("customresourcedefinitions")) == 3  # kept: they hold the VMs and Migrations
        assert cli("runtime", "uninstall", "--delete-crds", "--kubeconfig", kubeconfig)[0] == 0
        assert api.objects("customresourcedefinitions") == []


def test_install_refuses_where_kubevirt_crds_exist(tmp_path: Path) -> None:
    theirs = yaml.safe_load(CRD_FILES[0].read_text())
    theirs["metadata"]["labels"] = {"app.kubernetes.io/part-of": "kubevirt"}
    with FakeApiServer(crds=[theirs]) as api:
        kubeconfig = str(api.kubeconfig(tmp_path / "kubeconfig"))
        code, out = cli("runtime", "install", "--kubeconfig", kubeconfig)
        assert code != 0
        assert out.count("\n") == 1 and "virtualmachines.kubevirt.io already exist and are not ours" in out
        assert api.objects("daemonsets") == []


def deployed(api: FakeApiServer, tmp_path: Path) -> kubernetes.client.ApiClient:
    """The runtime's deploy manifests (the CRDs are the server's already) created as admin; the admin client."""
    admin = kubernetes.config.new_client_from_config(str(api.kubeconfig(tmp_path / "admin")))
    dynamic = kubernetes.dynamic.DynamicClient(admin)
    for doc in manifests():
        if doc["kind"] != "CustomResourceDefinition":
            dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"]).create(
                body=doc, namespace=doc["metadata"].get("namespace")
            )
    return admin


def test_handler_and_controller_rbac_is_least_privilege(tmp_path: Path) -> None:
    with FakeApiServer(crds=CRD_FILES) as api:
        admin = deployed(api, tmp_path)
        custom = kubernetes.client.CustomObjectsApi(admin)
        vmi = {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {"name": "a"},
            "spec": {"domain": {"devices": {}}},
        }
        custom.create_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachineinstances", vmi)

        def as_(sa: str) -> tuple[kubernetes.client.CustomObjectsApi, kubernetes.client.CoreV1Api]:
            path = api.kubeconfig(tmp_path / sa, token=api.token_for("migrator-runtime", sa))
            client = kubernetes.config.new_client_from_config(str(path))
            return kubernetes.client.CustomObjectsApi(client), kubernetes.client.CoreV1Api(client)

        handler, handler_core = as_("migrator-handler")
        assert handler.list_cluster_custom_object("kubevirt.io", "v1", "virtualmachineinstances")["items"]
        # The instance's status is no subresource (as in KubeVirt): the handler patches the instance.
        handler.patch_namespaced_custom_object(
            "kubevirt.io", "v1", "default", "virtualmachineinstances", "a", {"status": {"phase": "Running"}}
        )
        forbidden = [
            lambda: handler.create_namespaced_custom_object(
                "kubevirt.io", "v1", "default", "virtualmachineinstances", vmi
            ),
            lambda: handler.delete_namespaced_custom_object(
                "kubevirt.io", "v1", "default", "virtualmachineinstances", "a"
            ),
            lambda: handler.list_cluster_custom_object("kubevirt.io", "v1", "virtualmachines"),
            lambda: handler_core.list_pod_for_all_namespaces(),
            lambda: handler_core.list_secret_for_all_namespaces(),
        ]
        for call in forbidden:
            with pytest.raises(kubernetes.client.ApiException) as error:
                call()
            assert error.value.status == 403
        controller, controller_core = as_("migrator-controller")
        controller.delete_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachineinstances", "a")
        controller_core.list_pod_for_all_namespaces()
        with pytest.raises(kubernetes.client.ApiException) as error:
            controller_core.list_secret_for_all_namespaces()
        assert error.value.status == 403


def test_controller_runs_with_its_service_account_rbac(tmp_path: Path) -> None:
    """The controller process, with only its ClusterRole's rights, creates an instance and its pod."""
    with FakeApiServer(crds=CRD_FILES) as api:
        admin = deployed(api, tmp_path)
        custom = kubernetes.client.CustomObjectsApi(admin)
        kubernetes.client.CoreV1Api(admin).create_namespaced_persistent_volume_claim(
            "default",
            {
                "metadata": {"name": "web-disk0"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            },
        )
        custom.create_namespaced_custom_object(
            "kubevirt.io", "v1", "default", "virtualmachines", vm_manifest("web", "web-disk0")
        )
        token = api.token_for("migrator-runtime", "migrator-controller")
        kubeconfig = api.kubeconfig(tmp_path / "controller", token=token)
        process = spawn_module(["runtime.controller", "--kubeconfig", str(kubeconfig)], tmp_path / "controller.log")
        try:
            api.wait_for("pods", lambda pods: len(pods) == 1, namespace="default", timeout=30)
            api.wait_for(
                "virtualmachines.kubevirt.io",
                lambda vms: (vms[0].get("status") or {}).get("printableStatus") == "Starting",
                namespace="default",
                timeout=30,
            )
        finally:
            process.terminate()
            process.wait(10)
        assert "403" not in (tmp_path / "controller.log").read_text()
