"""``migrator runtime install|uninstall`` and ``migrator runtime vm start|stop|restart|pause|unpause``: the
in-cluster runtime on the cluster of a kubeconfig.

KubeVirt takes start/stop/restart through subresources of its aggregated API server; this runtime has none,
so ``vm start|stop`` change ``spec.runStrategy`` (Always/Halted; Manual VMs get the
``migrator.io/start-requested``/``stop-requested`` annotation instead) and ``vm restart`` sets
``migrator.io/restart-requested``; ``vm pause|unpause`` set ``migrator.io/paused`` on the instance.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click
import yaml

from core.errors import NotFoundError, TargetError
from migrator.cli.options import cluster_options
from runtime import deploy

PART_OF = ("app.kubernetes.io/part-of", "migrator-runtime")
FIELD_MANAGER = "migrator"


RUNTIME_NAMESPACE = "migrator-runtime"  # where runtime/deploy/ puts the controller and the handler


def manifests(namespace: str = RUNTIME_NAMESPACE) -> list[dict[str, Any]]:
    """CRDs first, then runtime/deploy/*.yaml in name order (package data: ``runtime.deploy``), the runtime's own
    objects in ``namespace``."""
    return [_moved(doc, namespace) for doc in deploy.manifests()]


def _moved(value: Any, namespace: str, key: str | None = None) -> Any:
    """``value`` with every ``namespace: migrator-runtime`` (and the Namespace object itself) in ``namespace``."""
    if namespace == RUNTIME_NAMESPACE:
        return value
    if isinstance(value, dict):
        moved = {k: _moved(v, namespace, k) for k, v in value.items()}
        if moved.get("kind") == "Namespace" and (moved.get("metadata") or {}).get("name") == RUNTIME_NAMESPACE:
            moved["metadata"] = {**moved["metadata"], "name": namespace}
        return moved
    if isinstance(value, list):
        return [_moved(v, namespace) for v in value]
    return namespace if key == "namespace" and value == RUNTIME_NAMESPACE else value


def _client(kubeconfig: str | None, context: str | None = None) -> Any:
    from migrator import kube

    client = kube.api_client(kube.KubeAccess(kubeconfig, context))
    kube.check_reachable(client)
    return client


def _api_error(action: str, error: Any) -> TargetError:
    reason = getattr(error, "reason", None) or str(error).splitlines()[0]
    return TargetError(f"{action}: {getattr(error, 'status', '')} {reason}".strip())


def foreign_crds(client: Any) -> list[str]:
    """Names of virtualmachines/virtualmachineinstances.kubevirt.io CRDs that are not ours (e.g. KubeVirt's)."""
    import kubernetes

    api = kubernetes.client.ApiextensionsV1Api(client)
    found = []
    for name in [crd["metadata"]["name"] for crd in deploy.crds()]:
        try:
            crd = api.read_custom_resource_definition(name, _preload_content=False)
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                continue
            raise _api_error(f"reading CRD {name}", error) from None
        labels = (yaml.safe_load(crd.data).get("metadata") or {}).get("labels") or {}
        if labels.get(PART_OF[0]) != PART_OF[1]:
            found.append(name)
    return found


def install(kubeconfig: str | None, context: str | None = None, namespace: str = RUNTIME_NAMESPACE) -> list[str]:
    import kubernetes
    from kubernetes.dynamic import DynamicClient

    client = _client(kubeconfig, context)
    try:
        foreign = foreign_crds(client)
    except kubernetes.client.ApiException as error:
        raise _api_error("reading CRDs", error) from None
    except OSError as error:
        raise TargetError(f"cannot reach the cluster: {error}") from None
    if foreign:
        raise TargetError(
            f"refusing to install: {', '.join(foreign)} already exist and are not ours (KubeVirt is installed?); "
            "use KubeVirt itself to run the migrated VMs"
        )
    dynamic = DynamicClient(client)
    applied = []
    for doc in manifests(namespace):
        resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        try:
            resource.server_side_apply(
                body=doc, namespace=doc["metadata"].get("namespace"), field_manager=FIELD_MANAGER, force_conflicts=True
            )
        except kubernetes.client.ApiException as error:
            raise _api_error(f"applying {doc['kind']} {doc['metadata']['name']}", error) from None
        applied.append(f"{doc['kind']}/{doc['metadata']['name']}")
    return applied


def uninstall(
    kubeconfig: str | None, *, delete_crds: bool, context: str | None = None, namespace: str = RUNTIME_NAMESPACE
) -> list[str]:
    import kubernetes
    from kubernetes.dynamic import DynamicClient

    dynamic = DynamicClient(_client(kubeconfig, context))
    removed = []
    docs = manifests(namespace)
    for doc in reversed(docs):
        if doc["kind"] == "CustomResourceDefinition" and not delete_crds:
            continue
        resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        try:
            resource.delete(name=doc["metadata"]["name"], namespace=doc["metadata"].get("namespace"))
            removed.append(f"{doc['kind']}/{doc['metadata']['name']}")
        except kubernetes.client.ApiException as error:
            if error.status != 404:
                raise _api_error(f"deleting {doc['kind']} {doc['metadata']['name']}", error) from None
    return removed


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def request(kubeconfig: str | None, namespace: str, name: str, action: str, context: str | None = None) -> str:
    """Carry out ``vm start|stop|restart|pause|unpause``; returns what was done, in words."""
    import kubernetes

    custom = kubernetes.client.CustomObjectsApi(_client(kubeconfig, context))
    plural = "virtualmachineinstances" if action in ("pause", "unpause") else "virtualmachines"
    try:
        obj = custom.get_namespaced_custom_object("kubevirt.io", "v1", namespace, plural, name)
    except kubernetes.client.ApiException as error:
        if error.status == 404:
            if plural == "virtualmachineinstances":
                raise NotFoundError(f"no VirtualMachineInstance {namespace}/{name}: is the VM running?") from None
            raise NotFoundError(f"no VirtualMachine {namespace}/{name}") from None
        raise _api_error(f"reading {namespace}/{name}", error) from None
    strategy = (obj.get("spec") or {}).get("runStrategy")
    if action == "pause" or action == "unpause":
        patch: dict[str, Any] = {
            "metadata": {"annotations": {"migrator.io/paused": "true" if action == "pause" else "false"}}
        }
        done = f"{action} requested"
    elif action == "restart":
        patch = {"metadata": {"annotations": {"migrator.io/restart-requested": _now()}}}
        done = "restart requested"
    elif strategy == "Manual":
        patch = {"metadata": {"annotations": {f"migrator.io/{action}-requested": _now()}}}
        done = f"{action} requested"
    else:
        wanted = "Always" if action == "start" else "Halted"
        patch = {"spec": {"runStrategy": wanted}}
        done = f"runStrategy {wanted}"
    try:
        custom.patch_namespaced_custom_object("kubevirt.io", "v1", namespace, plural, name, patch)
    except kubernetes.client.ApiException as error:
        raise _api_error(f"patching {namespace}/{name}", error) from None
    return done


RUNTIME_NS_HELP = f"Namespace of the runtime's controller and handler (default {RUNTIME_NAMESPACE})."


@click.command(
    "install",
    epilog="""\b
Examples:
  migrator runtime install                          # the kubeconfig's current context
  migrator runtime install --context lab -n vm-runtime""",
)
@cluster_options(RUNTIME_NAMESPACE, RUNTIME_NS_HELP)
def install_command(kubeconfig: str | None, kube_context: str | None, namespace: str) -> None:
    """Install the in-cluster runtime (CRDs, RBAC, controller, handler) on the cluster."""
    for item in install(kubeconfig, kube_context, namespace):
        click.echo(f"applied {item}")


@click.command(
    "uninstall",
    epilog="""\b
Examples:
  migrator runtime uninstall                        # the runtime goes, the VirtualMachines stay
  migrator runtime uninstall --delete-crds          # ... and every VirtualMachine with the CRDs""",
)
@cluster_options(RUNTIME_NAMESPACE, RUNTIME_NS_HELP)
@click.option("--delete-crds", is_flag=True, help="Also delete the CRDs, and with them every VirtualMachine.")
def uninstall_command(kubeconfig: str | None, kube_context: str | None, namespace: str, delete_crds: bool) -> None:
    """Remove the in-cluster runtime from the cluster (the CRDs stay unless --delete-crds)."""
    for item in uninstall(kubeconfig, delete_crds=delete_crds, context=kube_context, namespace=namespace):
        click.echo(f"deleted {item}")


@click.group(
    "vm",
    epilog="""\b
Examples:
  migrator runtime vm start web01 -n prod
  migrator runtime vm restart web01 -n prod --context prod-east""",
)
def vm_group() -> None:
    """Start, stop, restart, pause or unpause a VirtualMachine on the cluster."""


def _vm_command(action: str) -> click.Command:
    @click.command(
        action,
        help=f"{action.capitalize()} the VirtualMachine NAME on the cluster.",
        epilog=f"""\b
Examples:
  migrator runtime vm {action} web01 -n prod
  migrator runtime vm {action} web01 --kubeconfig ~/.kube/lab --context lab""",
    )
    @click.argument("name")
    @cluster_options("default", "Namespace of the VirtualMachine.")
    def command(name: str, kubeconfig: str | None, kube_context: str | None, namespace: str) -> None:
        click.echo(f"{namespace}/{name}: {request(kubeconfig, namespace, name, action, kube_context)}")

    return command


for _action in ("start", "stop", "restart", "pause", "unpause"):
    vm_group.add_command(_vm_command(_action))


def register(group: click.Group) -> None:
    group.add_command(install_command)
    group.add_command(uninstall_command)
    group.add_command(vm_group)
