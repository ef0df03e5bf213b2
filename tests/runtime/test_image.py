"""`make image` for real, and the agents started inside it: opt-in (`make test-image`, or MIGRATOR_TEST_IMAGE=1),
since mmdebstrap downloads ~400 MB of Debian packages and takes several minutes, beyond the default suite's budget.

`buildah run` with chroot isolation (no OCI runtime works in these build sandboxes), which shares the host's
network: the controller and the handler in the image talk to the fake API server on the host's loopback.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from core.wait import wait_until
from runtime.deploy import crd_paths
from tests.fakekube import FakeApiServer

PROJECT = Path(__file__).resolve().parents[2]
IMAGE = "localhost/migrator-runtime:test"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(3600),  # the build alone (with virt-v2v, libguestfs and a kernel) takes 10-20 min here
    pytest.mark.skipif(os.environ.get("MIGRATOR_TEST_IMAGE") != "1", reason="make test-image builds the image"),
]


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    output = tmp_path_factory.mktemp("image") / "runtime.oci.tar"
    env = {**os.environ, "IMAGE": IMAGE, "OUTPUT": str(output)}
    subprocess.run(["bash", "runtime/image/build.sh"], cwd=PROJECT, env=env, check=True, timeout=3600)
    assert output.stat().st_size > 50_000_000
    inspect = subprocess.run(["buildah", "inspect", "--type", "image", IMAGE], capture_output=True, text=True)
    assert "/opt/migrator/venv/bin" in inspect.stdout
    ctr = subprocess.run(["buildah", "from", IMAGE], capture_output=True, text=True, check=True).stdout.strip()
    try:
        yield ctr
    finally:
        subprocess.run(["buildah", "rm", ctr], capture_output=True, check=False)


def run(ctr: str, *command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["buildah", "run", "--isolation", "chroot", ctr, "--", *command],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_image_holds_the_runtime_and_not_the_test_packages(container: str) -> None:
    done = run(container, "python3", "-c", "import kopf, kubernetes, libvirt, runtime.controller.main; print('ok')")
    assert done.stdout.strip() == "ok", done.stderr
    for package in ("tests", "testbed"):
        assert run(container, "python3", "-c", f"import {package}").returncode != 0
    assert "QEMU emulator" in run(container, "qemu-system-x86_64", "--version").stdout


def test_the_probe_answers_inside_the_image(container: str) -> None:
    started = time.monotonic()
    done = run(container, "python3", "-m", "runtime.accel", "--fresh", timeout=60)
    assert done.returncode == 0, done.stderr
    kind, _, reason = done.stdout.strip().partition(": ")
    assert kind in ("kvm", "tcg") and reason
    assert time.monotonic() - started < 30  # buildah's own start included


def test_the_launcher_starts_and_refuses_a_bad_instance_in_one_line(container: str) -> None:
    done = run(container, "python3", "-m", "runtime.launcher", "--vmi", "/nonexistent.yaml", "--accel", "tcg")
    assert done.returncode == 1  # Exit.FAILED_TO_START
    # buildah adds its own lines about the exit status; the launcher's is one line, and no traceback
    ours = [line for line in done.stderr.splitlines() if line.startswith("launcher: ")]
    assert ours == ["launcher: /nonexistent.yaml: No such file or directory"], done.stderr
    assert "Traceback" not in done.stderr


def test_the_controller_and_handler_start_in_the_image_and_work(container: str, tmp_path: Path) -> None:
    with FakeApiServer(crds=crd_paths(), scheduler=True) as api:
        kubeconfig = tmp_path / "kubeconfig"
        api.kubeconfig(kubeconfig)
        subprocess.run(
            ["buildah", "copy", container, str(kubeconfig), "/tmp/kubeconfig"], check=True, capture_output=True
        )
        client = kubernetes.config.new_client_from_config(str(kubeconfig))
        core = kubernetes.client.CoreV1Api(client)
        node = {"metadata": {"name": "node-1"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
        core.create_node(node)
        agents = [
            subprocess.Popen(
                ["buildah", "run", "--isolation", "chroot", container, "--", "python3", "-m", *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for args in (
                ["runtime.controller", "--kubeconfig", "/tmp/kubeconfig"],
                ["runtime.handler", "--node", "node-1", "--kubeconfig", "/tmp/kubeconfig", "--sockets-dir", "/tmp/s"],
            )
        ]
        try:
            custom = kubernetes.client.CustomObjectsApi(client)
            spec = {
                "domain": {"memory": {"guest": "128Mi"}, "devices": {}},
                "networks": [{"name": "default", "pod": {}}],
            }
            body = {
                "apiVersion": "kubevirt.io/v1",
                "kind": "VirtualMachine",
                "metadata": {"name": "image-vm", "namespace": "default"},
                "spec": {"runStrategy": "Always", "template": {"spec": spec}},
            }
            custom.create_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachines", body)

            def scheduled() -> bool:
                vmis = api.objects("virtualmachineinstances.kubevirt.io", "default")
                return bool(vmis) and (vmis[0].get("status") or {}).get("phase") == "Scheduled"

            assert wait_until(scheduled, timeout=120, interval=0.5), (
                "the controller in the image scheduling the instance"
            )
            assert all(agent.poll() is None for agent in agents)  # the handler runs too
        finally:
            for agent in agents:
                agent.terminate()
                try:
                    agent.wait(30)
                except subprocess.TimeoutExpired:
                    agent.kill()
