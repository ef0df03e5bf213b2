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

from core.errors import InputError, NotFoundError, TargetError
from runtime import deploy

PART_OF = ("app.kubernetes.io/part-of", "migrator-runtime")
FIELD_MANAGER = "migrator"


def _client(kubeconfig: str | None) -> Any:
    import kubernetes

    try:
        return kubernetes.config.new_client_from_config(config_file=kubeconfig)
    except (kubernetes.config.ConfigException, OSError) as error:
        raise InputError(f"cannot load the kubeconfig: {error}") from None


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


def install(kubeconfig: str | None) -> list[str]:
    import kubernetes
    from kubernetes.dynamic import DynamicClient

    client = _client(kubeconfig)
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
    for doc in deploy.manifests():
        resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        try:
            resource.server_side_apply(
                body=doc, namespace=doc["metadata"].get("namespace"), field_manager=FIELD_MANAGER, force_conflicts=True
            )
        except kubernetes.client.ApiException as error:
            raise _api_error(f"applying {doc['kind']} {doc['metadata']['name']}", error) from None
        applied.append(f"{doc['kind']}/{doc['metadata']['name']}")
    return applied


def uninstall(kubeconfig: str | None, *, delete_crds: bool) -> list[str]:
    import kubernetes
    from kubernetes.dynamic import DynamicClient

    dynamic = DynamicClient(_client(kubeconfig))
    removed = []
    docs = deploy.manifests()
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


def request(kubeconfig: str | None, namespace: str, name: str, action: str) -> str:
    """Carry out ``vm start|stop|restart|pause|unpause``; returns what was done, in words."""
    import kubernetes

    custom = kubernetes.client.CustomObjectsApi(_client(kubeconfig))
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


KUBECONFIG = click.option(
    "--kubeconfig", type=click.Path(dir_okay=False), help="Default: $KUBECONFIG or ~/.kube/config."
)


@click.command("install")
@KUBECONFIG
def install_command(kubeconfig: str | None) -> None:
    """Install the in-cluster runtime (CRDs, RBAC, controller, handler) on the cluster."""
    for item in install(kubeconfig):
        click.echo(f"applied {item}")


@click.command("uninstall")
@KUBECONFIG
@click.option("--delete-crds", is_flag=True, help="Also delete the CRDs, and with them every VirtualMachine.")
def uninstall_command(kubeconfig: str | None, delete_crds: bool) -> None:
    """Remove the in-cluster runtime from the cluster (the CRDs stay unless --delete-crds)."""
    for item in uninstall(kubeconfig, delete_crds=delete_crds):
        click.echo(f"deleted {item}")


@click.group("vm")
def vm_group() -> None:
    """Start, stop, restart, pause or unpause a VirtualMachine on the cluster."""


def _vm_command(action: str) -> click.Command:
    @click.command(action, help=f"{action.capitalize()} the VirtualMachine NAME on the cluster.")
    @click.argument("name")
    @click.option("--namespace", "-n", default="default", show_default=True)
    @KUBECONFIG
    def command(name: str, namespace: str, kubeconfig: str | None) -> None:
        click.echo(f"{namespace}/{name}: {request(kubeconfig, namespace, name, action)}")

    return command


for _action in ("start", "stop", "restart", "pause", "unpause"):
    vm_group.add_command(_vm_command(_action))


def register(group: click.Group) -> None:
    group.add_command(install_command)
    group.add_command(uninstall_command)
    group.add_command(vm_group)
