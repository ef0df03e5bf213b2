"""Against a real cluster: only when KUBECONFIG is set (no API server can run on the build machines).

Installs the runtime (refused, with one line, where KubeVirt is installed), checks that the CRDs are
established and accept a converted VirtualMachine (Halted: nothing is scheduled), then removes it all.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from core.wait import wait_until
from tests.runtime.guest_layout import vm_manifest

PROJECT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="needs a real cluster: set KUBECONFIG")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from migrator.cli import main; main()", *args]
    return subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, timeout=300)


def test_install_accepts_a_vm_and_uninstall() -> None:
    import kubernetes

    installed = cli("runtime", "install")
    if installed.returncode != 0 and "not ours" in installed.stderr:
        assert installed.stderr.count("\n") == 1
        pytest.skip("KubeVirt's CRDs are installed on this cluster: install refused, as it should")
    assert installed.returncode == 0, installed.stderr
    client = kubernetes.config.new_client_from_config()
    custom = kubernetes.client.CustomObjectsApi(client)
    extensions = kubernetes.client.ApiextensionsV1Api(client)

    def established() -> bool:
        crd = extensions.read_custom_resource_definition("virtualmachines.kubevirt.io")
        return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])

    wait_until(established, timeout=60, interval=1)
    name = f"probe-{uuid.uuid4().hex[:6]}"
    manifest = vm_manifest(name, f"{name}-disk0")
    manifest["spec"]["runStrategy"] = "Halted"
    try:
        created = custom.create_namespaced_custom_object(
            "kubevirt.io", "v1", "default", "virtualmachines", manifest, field_validation="Strict"
        )
        assert created["spec"]["template"]["spec"]["domain"] == manifest["spec"]["template"]["spec"]["domain"]
    finally:
        custom.delete_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachines", name)
        assert cli("runtime", "uninstall").returncode == 0
