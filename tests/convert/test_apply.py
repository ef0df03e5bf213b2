"""`convert --apply`'s manifest side against the fake API server over real HTTP, through the real dynamic client.

Filling volumes needs a real cluster (a pod mounting the claims, or CDI's upload proxy): that part
runs in ``test_apply_real_cluster`` only when KUBECONFIG is set. Here the fill step is a recorder
so the test can see when it is (not) called; everything else is the code a real cluster exercises.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from converters.specs import SpecOptions, vm_manifests
from core.errors import TargetError
from migrator.convert import cluster
from tests.fakekube import FakeApiServer
from tests.specs.builders import plan_of, planned


def crd(group: str, version: str, kind: str, plural: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }


CRDS = [
    crd("kubevirt.io", "v1", "VirtualMachine", "virtualmachines"),
    crd("cdi.kubevirt.io", "v1beta1", "DataVolume", "datavolumes"),
]


def manifests(datavolumes: bool = False):
    p = planned()
    plan = plan_of(p)
    plan.target_namespace = "default"
    return vm_manifests(p, plan, SpecOptions(use_datavolumes=datavolumes))


@pytest.mark.parametrize("datavolumes", [False, True])
def test_apply_creates_volumes_then_vm_and_converges(tmp_path: Path, datavolumes: bool) -> None:
    m = manifests(datavolumes)
    filled: list[str] = []

    def fill(_client: Any, volume: dict[str, Any]) -> int:
        filled.append(volume["metadata"]["name"])
        return 1024

    with FakeApiServer(crds=CRDS) as api:
        client = cluster.dynamic_client(str(api.kubeconfig(tmp_path / "kubeconfig")))
        cluster.apply_objects(client, m, fill)
        assert filled == ["web-01-disk-0", "web-01-disk-1"]
        kind = "datavolumes.cdi.kubevirt.io" if datavolumes else "persistentvolumeclaims"
        volumes = api.objects(kind, "default")
        assert [v["metadata"]["name"] for v in volumes] == filled
        assert all(v["metadata"]["annotations"][cluster.FILLED_ANNOTATION] == "1024" for v in volumes)
        managers = {e["manager"] for e in volumes[0]["metadata"]["managedFields"]}
        assert managers == {"migrator", "migrator-filler"}
        [vm] = api.objects("virtualmachines.kubevirt.io", "default")
        assert vm["spec"]["runStrategy"] == "Halted"
        assert (
            vm["spec"]["template"]["spec"]["domain"]["firmware"]["uuid"]
            == m.virtual_machine["spec"]["template"]["spec"]["domain"]["firmware"]["uuid"]
        )

        # second run: no AlreadyExists, no refill, the filled mark survives the re-apply
        cluster.apply_objects(client, m, fill)
        assert filled == ["web-01-disk-0", "web-01-disk-1"]
        again = api.objects(kind, "default")
        assert all(v["metadata"]["annotations"][cluster.FILLED_ANNOTATION] == "1024" for v in again)
        assert api.request_count("create", "virtualmachines") == 0  # server-side apply only: patches
        assert api.request_count("patch", "virtualmachines") == 2


def test_apply_to_missing_namespace_is_a_target_error(tmp_path: Path) -> None:
    p = planned()
    m = vm_manifests(p, plan_of(p))  # namespace "migrated" does not exist
    with FakeApiServer(crds=CRDS) as api:
        client = cluster.dynamic_client(str(api.kubeconfig(tmp_path / "kubeconfig")))
        with pytest.raises(TargetError, match="applying PersistentVolumeClaim web-01-disk-0"):
            cluster.apply_objects(client, m, lambda _c, _v: 0)


def test_apply_without_kubevirt_says_so(tmp_path: Path) -> None:
    with FakeApiServer() as api:
        client = cluster.dynamic_client(str(api.kubeconfig(tmp_path / "kubeconfig")))
        with pytest.raises(TargetError, match="is KubeVirt installed"):
            cluster.apply_objects(client, manifests(), lambda _c, _v: 0)


def test_unreachable_cluster(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    # A port bound but never listening: connections are refused, and no other process can take it meanwhile.
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        with FakeApiServer() as api:
            api.kubeconfig(kubeconfig)
            kubeconfig.write_text(
                kubeconfig.read_text().replace(api.url, f"http://127.0.0.1:{reserved.getsockname()[1]}")
            )
        with pytest.raises(TargetError, match="cannot reach the cluster"):
            cluster.dynamic_client(str(kubeconfig))


@pytest.mark.cluster
@pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="needs a real cluster (KUBECONFIG)")
def test_apply_real_cluster(tmp_path: Path) -> None:
    """On a real cluster with KubeVirt (and CDI for DataVolumes): convert --apply, twice."""
    from tests.convert.helpers import make_vmdk, migrator, write_vmx

    make_vmdk(tmp_path / "tiny.vmdk")
    vmx = write_vmx(tmp_path / "tiny.vmx", "tiny", ["tiny.vmdk"])
    namespace = os.environ.get("MIGRATOR_TEST_NAMESPACE", "default")
    args = ["convert", "--source", f"vmx:{vmx}", "--vm", "tiny", "--apply", "--namespace", namespace]
    args += ["--output-dir", str(tmp_path / "out")]
    if os.environ.get("MIGRATOR_TEST_DATAVOLUMES") == "1":
        args.append("--datavolumes")
    first = migrator(*args, timeout=1200)
    assert first.returncode == 0, first.stderr
    second = migrator(*args, timeout=1200)
    assert second.returncode == 0, second.stderr
    assert "filled" not in second.stderr


def test_filler_pod_is_a_valid_pod() -> None:
    """Warm deltas into a plain PVC (convert.fill_delta) still go through it."""
    from tests.k8s_schema import validate_kubernetes

    for pvc in manifests().volumes:
        pod = cluster.filler_pod(pvc)
        validate_kubernetes(pod)
        assert pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]


def test_a_plain_pvc_is_filled_where_it_is_mounted(tmp_path: Path) -> None:
    """In a pod that mounts the claim (a Migration's Job): the disk engine writes the image into it."""
    image = tmp_path / "disk.raw"
    with image.open("wb") as f:
        f.truncate(8 << 20)
        f.seek(1 << 20)
        f.write(b"MIGRATOR" * 4096)
    with pytest.raises(TargetError, match="volume web-disk-0 is not mounted at"):
        cluster.fill_mounted("web-disk-0", image, tmp_path / "volumes")
    (tmp_path / "volumes" / "web-disk-0").mkdir(parents=True)
    cluster.fill_mounted("web-disk-0", image, tmp_path / "volumes")
    filled = tmp_path / "volumes" / "web-disk-0" / "disk.img"
    assert filled.read_bytes() == image.read_bytes()
    assert filled.stat().st_blocks * 512 < 1 << 20  # holes stay holes


def test_cdi_upload_posts_the_image_with_the_token(tmp_path: Path) -> None:
    """The upload half of CDI's protocol (what virtctl image-upload sends), against a real HTTP server."""
    import http.server
    import threading

    received: dict[str, Any] = {}

    class Proxy(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received["path"] = self.path
            received["auth"] = self.headers["Authorization"]
            received["body"] = self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200 if received["auth"] == "Bearer t0ken" else 401)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        image = tmp_path / "d.img"
        image.write_bytes(b"\x5a" * (5 << 20))
        url = f"http://127.0.0.1:{server.server_address[1]}/v1beta1/upload"
        cluster.post_image(url, "t0ken", image)
        assert received["path"] == "/v1beta1/upload" and received["body"] == image.read_bytes()
        with pytest.raises(TargetError, match="HTTP 401"):
            cluster.post_image(url, "wrong", image)
    finally:
        server.shutdown()
