"""The cluster target (`convert --apply`): volumes, their content, then the VirtualMachine.

Every object goes through server-side apply (field manager "migrator", conflicts forced), so a
re-run converges instead of failing on AlreadyExists. Filling a volume needs something inside
the cluster: with ``--datavolumes`` CDI's upload proxy (what ``virtctl image-upload`` does);
with plain PVCs, a process that mounts the claims (``volumes_dir``: a Migration's Job, which
runs this very code) writes each image into its claim. A filled volume is marked with an
annotation, and a re-run does not fill it again.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import ssl
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from converters.specs import Manifests
from core.errors import MigratorError, TargetError
from core.wait import wait_until

FIELD_MANAGER = "migrator"
FILLED_ANNOTATION = "migrator.io/filled"  # "<bytes>": the image size written into the volume
FILLER_IMAGE_ENV = "MIGRATOR_FILLER_IMAGE"
FILLER_IMAGE = "docker.io/library/busybox:1.36"
UPLOAD_PROXY_ENV = "MIGRATOR_CDI_UPLOADPROXY_URL"
UPLOAD_INSECURE_ENV = "MIGRATOR_CDI_UPLOADPROXY_INSECURE"
WAIT_SECONDS = 600.0
FILLER_POLL = 0.25  # seconds between looks at a filler pod: a warm cutover's final delta waits for it
_CHUNK = 4 << 20

Echo = Callable[[str], None]
log = logging.getLogger(__name__)


def dynamic_client(kubeconfig: str | None, context: str | None = None) -> Any:
    """A dynamic client on the cluster of ``kubeconfig``/``context``; the discovery it does checks reachability."""
    from kubernetes import dynamic

    from migrator import kube

    api_client = kube.api_client(kube.KubeAccess(kubeconfig, context))
    try:
        return dynamic.DynamicClient(api_client)
    except Exception as error:  # urllib3/ApiException while reading discovery: unreachable or refused
        problem = kube.unreachable(api_client, error)
        if problem is not None:
            raise problem from None
        raise TargetError(f"cannot reach the cluster {kube.server_of(api_client)}: {api_error_reason(error)}") from None


def api_error_reason(error: Exception) -> str:
    body = getattr(error, "body", None)
    if body:
        try:
            return str(json.loads(body).get("message", body))
        except (ValueError, AttributeError):
            return str(body)[:200]
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def api_resource(client: Any, obj: dict[str, Any]) -> Any:
    from kubernetes.dynamic.exceptions import ResourceNotFoundError

    try:
        return client.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    except ResourceNotFoundError:
        raise TargetError(
            f"the cluster does not serve {obj['kind']} ({obj['apiVersion']}): is "
            f"{'CDI' if 'cdi' in obj['apiVersion'] else 'KubeVirt'} installed?"
        ) from None


def server_side_apply(client: Any, obj: dict[str, Any]) -> dict[str, Any]:
    """Create or converge ``obj``; return the object as the server now has it."""
    meta = obj["metadata"]
    log.info("kubernetes: apply %s %s/%s", obj["kind"], meta.get("namespace") or "-", meta["name"])
    try:
        applied = client.server_side_apply(
            api_resource(client, obj),
            body=obj,
            name=meta["name"],
            namespace=meta.get("namespace"),
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )
    except MigratorError:
        raise
    except Exception as error:
        raise TargetError(f"applying {obj['kind']} {meta['name']}: {api_error_reason(error)}") from None
    result: dict[str, Any] = applied.to_dict()
    return result


def _annotate_filled(client: Any, obj: dict[str, Any], size: int) -> None:
    patch = {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {"name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"]},
    }
    patch["metadata"]["annotations"] = {FILLED_ANNOTATION: str(size)}
    # Its own field manager: the next apply of the volume by "migrator" does not remove the mark.
    client.server_side_apply(
        api_resource(client, obj),
        body=patch,
        name=obj["metadata"]["name"],
        namespace=obj["metadata"]["namespace"],
        field_manager=f"{FIELD_MANAGER}-filler",
        force_conflicts=True,
    )


def apply_objects(client: Any, manifests: Manifests, fill: Callable[[Any, dict[str, Any]], int | None]) -> None:
    """Volumes (applied, then filled unless marked filled), then the VirtualMachine."""
    for volume in manifests.volumes:
        live = server_side_apply(client, volume)
        annotations = (live.get("metadata") or {}).get("annotations") or {}
        if FILLED_ANNOTATION in annotations:
            continue
        size = fill(client, volume)
        if size is not None:
            _annotate_filled(client, volume, size)
    server_side_apply(client, manifests.virtual_machine)


def fill_mounted(claim: str, image: Path, volumes_dir: Path) -> None:
    """Write ``image`` into the claim mounted at ``volumes_dir/<claim>/`` as ``disk.img`` (sparse, verified).

    How a PVC is filled from inside the cluster: the Migration controller's Job mounts each of the
    VM's claims there, and this copy is the disk engine's (holes stay holes, every chunk read back)."""
    from converters.disks import DiskJob, LocalSource, transfer_disks

    mount = volumes_dir / claim
    if not mount.is_dir():
        raise TargetError(f"volume {claim} is not mounted at {mount}")
    transfer_disks([DiskJob(claim, LocalSource(image), mount / "disk.img")], progress="none", verify=True)


def apply(
    manifests: Manifests,
    images: dict[str, Path],
    *,
    kubeconfig: str | None,
    echo: Echo,
    volumes_dir: Path | None = None,
    context: str | None = None,
    client: Any = None,
) -> None:
    """Apply ``manifests``, filling each volume from ``images``; ``client`` when the caller already checked it."""
    client = client if client is not None else dynamic_client(kubeconfig, context)

    def fill(client: Any, volume: dict[str, Any]) -> int:
        claim = volume["metadata"]["name"]
        image = images[claim]
        if volume["kind"] == "DataVolume":
            cdi_upload(client, volume, image, echo)
        else:
            if image.suffix != ".img":
                raise TargetError(f"{claim}: a plain PVC holds a raw disk.img: convert with --format raw")
            if volumes_dir is None:
                raise TargetError(
                    f"{claim}: a plain PVC is filled where it is mounted: run the transfer in a pod that mounts "
                    "it (a Migration's Job, --volumes-dir), or use --datavolumes on a cluster with CDI"
                )
            fill_mounted(claim, image, volumes_dir)
        echo(f"volume {claim}: filled from {image}")
        return image.stat().st_size

    apply_objects(client, manifests, fill)
    echo(f"applied VirtualMachine {manifests.virtual_machine['metadata']['namespace']}/{manifests.name}")


# ---- CDI upload (DataVolume with source.upload) -------------------------------------------------------------


def _wait(what: str, check: Callable[[], bool], timeout: float = WAIT_SECONDS, interval: float = 2.0) -> None:
    if not wait_until(check, timeout=timeout, interval=interval):
        raise TargetError(f"timed out waiting for {what}")


def _upload_proxy_url(client: Any) -> str:
    url = os.environ.get(UPLOAD_PROXY_ENV)
    if url:
        return url.rstrip("/")
    try:
        configs = client.resources.get(api_version="cdi.kubevirt.io/v1beta1", kind="CDIConfig")
        status = configs.get(name="config").to_dict().get("status") or {}
    except Exception as error:
        reason = api_error_reason(error)
        raise TargetError(f"cannot read CDI's upload proxy URL ({reason}): set {UPLOAD_PROXY_ENV}") from None
    url = status.get("uploadProxyURL")
    if not url:
        raise TargetError(f"CDI publishes no upload proxy URL: set {UPLOAD_PROXY_ENV}")
    return url if "://" in url else f"https://{url}"


def cdi_upload(client: Any, dv: dict[str, Any], image: Path, echo: Echo) -> None:
    name, namespace = dv["metadata"]["name"], dv["metadata"]["namespace"]
    dvs = api_resource(client, dv)

    def phase() -> str:
        return str(((dvs.get(name=name, namespace=namespace).to_dict().get("status")) or {}).get("phase", ""))

    if phase() == "Succeeded":
        return
    echo(f"volume {name}: waiting for CDI's upload server")
    _wait(f"DataVolume {name} to be UploadReady", lambda: phase() in ("UploadReady", "Succeeded"))
    if phase() == "Succeeded":
        return
    tokens = client.resources.get(api_version="upload.cdi.kubevirt.io/v1beta1", kind="UploadTokenRequest")
    request = {
        "apiVersion": "upload.cdi.kubevirt.io/v1beta1",
        "kind": "UploadTokenRequest",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"pvcName": name},
    }
    token = tokens.create(body=request, namespace=namespace).to_dict()["status"]["token"]
    post_image(f"{_upload_proxy_url(client)}/v1beta1/upload", token, image)
    _wait(f"DataVolume {name} to finish", lambda: phase() == "Succeeded")


def post_image(url: str, token: str, image: Path) -> None:
    parts = urlsplit(url)
    context = ssl.create_default_context()
    if os.environ.get(UPLOAD_INSECURE_ENV) == "1":  # CDI's upload proxy often has a self-signed certificate
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    kwargs: dict[str, Any] = {"context": context} if parts.scheme == "https" else {}
    conn = conn_cls(parts.hostname or "", parts.port, timeout=300, **kwargs)
    try:
        size = image.stat().st_size
        conn.putrequest("POST", parts.path or "/")
        conn.putheader("Authorization", f"Bearer {token}")
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(size))
        conn.endheaders()
        with image.open("rb") as f:
            while chunk := f.read(_CHUNK):
                conn.send(chunk)
        response = conn.getresponse()
        body = response.read().decode(errors="replace").strip()
        if response.status != 200:
            raise TargetError(f"CDI upload of {image.name} refused: HTTP {response.status} {body[:200]}")
    except OSError as error:
        raise TargetError(f"CDI upload of {image.name} failed: {error}") from None
    finally:
        conn.close()


# ---- warm deltas into a plain PVC (convert.fill_delta): a filler pod that receives the bytes on stdin ----------


def filler_pod(pvc: dict[str, Any]) -> dict[str, Any]:
    name, namespace = pvc["metadata"]["name"], pvc["metadata"]["namespace"]
    block = pvc["spec"].get("volumeMode") == "Block"
    container: dict[str, Any] = {
        "name": "filler",
        "image": os.environ.get(FILLER_IMAGE_ENV, FILLER_IMAGE),
        "command": ["sh", "-c", "sleep 3600"],
    }
    if block:
        container["volumeDevices"] = [{"name": "disk", "devicePath": "/dev/migrator-disk"}]
    else:
        container["volumeMounts"] = [{"name": "disk", "mountPath": "/data"}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"migrator-fill-{name}"[:63],
            "namespace": namespace,
            "labels": {"migrator.io/filler": "true"},
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": [container],
            "volumes": [{"name": "disk", "persistentVolumeClaim": {"claimName": name}}],
        },
    }


def fill_with_pod(client: Any, pvc: dict[str, Any], image: Path, echo: Echo) -> None:
    def command(target: str, size: int) -> str:
        # `head -c SIZE` ends by itself after the last byte: no need to half-close stdin, which the
        # v4 exec protocol the client speaks cannot do.
        if target.startswith("/dev/"):
            return f"head -c {size} > {target}"
        # KubeVirt runs QEMU as uid 107 (qemu): the image must be its own, as CDI leaves it.
        return (
            f"head -c {size} > {target}.partial && mv {target}.partial {target}"
            f" && chmod 0660 {target} && (chown 107:107 {target} 2>/dev/null || true)"
        )

    def chunks() -> Iterator[bytes]:
        with image.open("rb") as f:
            while chunk := f.read(_CHUNK):
                yield chunk

    echo(f"volume {pvc['metadata']['name']}: waiting for the filler pod")
    size = image.stat().st_size
    exec_in_filler_pod(client, pvc, lambda target: command(target, size), chunks(), what="filling", before="upload")


def exec_in_filler_pod(
    client: Any, pvc: dict[str, Any], command: Callable[[str], str], stdin: Iterable[bytes], *, what: str, before: str
) -> None:
    """Start the volume's filler pod, run ``command(target)`` there with ``stdin``, then delete the pod.

    ``target`` is the volume's disk in the pod: its block device, or ``disk.img`` on its filesystem.
    Failures are one TargetError line: "<what> <target> in <pod> failed: ...".
    """
    from kubernetes import client as k8s
    from kubernetes.dynamic.exceptions import NotFoundError
    from kubernetes.stream import stream

    pod = filler_pod(pvc)
    pod_name, namespace = pod["metadata"]["name"], pod["metadata"]["namespace"]
    pods = api_resource(client, pod)

    def previous_gone() -> bool:
        """The pod of the previous fill is deleted but may still be terminating: its container then dies at the
        end of its grace period, possibly in the middle of this fill (a warm cutover's rounds follow closely)."""
        try:
            live = pods.get(name=pod_name, namespace=namespace).to_dict()
        except NotFoundError:
            return True
        return not (live.get("metadata") or {}).get("deletionTimestamp")

    _wait(f"the previous pod {pod_name} to terminate", previous_gone, interval=FILLER_POLL)
    server_side_apply(client, pod)

    def running() -> bool:
        phase = (pods.get(name=pod_name, namespace=namespace).to_dict().get("status") or {}).get("phase")
        if phase in ("Failed", "Succeeded"):
            raise TargetError(f"filler pod {pod_name} ended ({phase}) before the {before}")
        return phase == "Running"

    target = "/dev/migrator-disk" if pvc["spec"].get("volumeMode") == "Block" else "/data/disk.img"
    try:
        _wait(f"pod {pod_name}", running, interval=FILLER_POLL)
        session = stream(
            k8s.CoreV1Api(client.client).connect_get_namespaced_pod_exec,
            pod_name,
            namespace,
            command=["sh", "-c", command(target)],
            stdin=True,
            stdout=True,
            stderr=True,
            tty=False,
            _preload_content=False,
        )
        for chunk in stdin:
            session.write_stdin(chunk)
            session.update(timeout=0)
        session.run_forever(timeout=WAIT_SECONDS)
        if session.returncode not in (0, None):
            detail = session.read_stderr()[:200].strip() or f"exit {session.returncode}"
            raise TargetError(f"{what} {target} in {pod_name} failed: {detail}")
    except MigratorError:
        raise
    except Exception as error:  # websocket/API failures while streaming: one line
        raise TargetError(f"{what} {target} in {pod_name} failed: {api_error_reason(error)}") from None
    finally:
        try:
            pods.delete(name=pod_name, namespace=namespace)
        except Exception:  # already gone: nothing to clean
            pass
