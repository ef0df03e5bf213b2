"""kopf registration of the controller: ``python -m runtime.controller [--kubeconfig F] [--namespace NS]``.

Every watched event (VirtualMachine, VirtualMachineInstance, launcher Pod, PersistentVolumeClaim) reconciles
the objects it concerns, level-triggered, from the event's copy and kopf's indexes of the others (no reads):

- the handlers (and indexes) are coroutines: each decides in the event loop, without I/O (the reconcilers'
  ``plan``), and takes one of the controller's write threads only for the API writes that decision needs;
- kopf serializes the events of one object, and drops its index entries, memo and daemon when it goes, so the
  controller keeps no table of its own;
- an instance's change reconciles its VM too, from another worker: their writes carry resourceVersion or uid
  preconditions, and a 409 means the newer version's event follows;
- time passing (a CrashLoopBackOff ending, a run long enough to forget start failures) and retries after an
  API error are a kopf daemon on the VMs that need one, which sleeps until then and reports failures as
  ``kopf.TemporaryError`` with a delay (kopf restarts it after the delay). A controller killed at any point
  and started again converges: kopf's initial listing replays every object.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import kopf
from kubernetes.client.exceptions import ApiException

from core.quantity import parse_quantity
from runtime.controller import status as rules
from runtime.controller.kube import POOL_SIZE, api_client, connection_info
from runtime.controller.lookups import IndexLookups, Lookups, newest
from runtime.controller.names import GROUP, LABEL_APP, LABEL_DOMAIN, VERSION, VMIS, VMS
from runtime.controller.pods import KVM_RESOURCE, claims
from runtime.controller.vm import VmReconciler
from runtime.controller.vmi import VmiReconciler
from runtime.operator import agent_parser, run_operator

log = logging.getLogger("runtime.controller")
RETRY_DELAY = 5.0  # seconds before a failed reconcile runs again
CLOCK_TICK = 1.0  # how often a VM's daemon looks at the time (pure); only VMs with a start failure have one
CANCELLATION_TIMEOUT = 5.0
GC_THRESHOLDS = (3_000, 10, 10)
T = TypeVar("T")


class Controller:
    """The two reconcilers; ``register`` wires them to kopf's events, indexes and daemons.

    The handlers are coroutines: each decides in the event loop, from the event and the indexes (``plan``, no
    I/O), and takes a worker thread only for the writes, if any (the API client blocks). Most events need
    none: the echoes of the controller's own writes, a pod created but not yet bound.
    """

    def __init__(self, kubeconfig: str | None = None, image: str | None = None) -> None:
        self.kubeconfig = kubeconfig
        client = api_client(kubeconfig)
        self.vms = VmReconciler(client)
        self.vmis = VmiReconciler(client, image=image)
        # as many threads as the client pool's connections
        self.writers = ThreadPoolExecutor(POOL_SIZE, thread_name_prefix="controller-write")

    async def write(self, writes: Callable[[], T]) -> T:
        """Run ``writes`` (API calls) off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.writers, writes)

    async def vm(self, vm: dict[str, Any] | None, lookups: Lookups, memo: Any = None) -> None:
        """Reconcile a VM. ``memo`` (the VM's own, in its worker) keeps the VM and the instance as last written
        here, newer than the event or the index until the watch delivers them."""
        if vm is not None:
            _, writes = self.vms.plan(vm, lookups, memo)
            if writes is not None:
                await self.write(writes)

    async def vmi(self, vmi: dict[str, Any] | None, lookups: Lookups) -> None:
        writes = None if vmi is None else self.vmis.plan(vmi, lookups)
        if writes is not None:
            await self.write(writes)

    async def pod(self, namespace: str, vmi_name: str, pod: dict[str, Any] | None, lookups: Lookups, memo: Any) -> None:
        """A launcher pod changed: its instance follows. ``memo`` (the pod's) keeps the instance as last written
        here, newer than the index until the watch delivers it: a write from a stale copy would be a 409."""
        indexed = lookups.vmi(namespace, vmi_name)
        if indexed is None:
            return
        writes = self.vmis.plan_follow(newest(indexed, memo.get("vmi")), pod)
        if writes is not None:
            memo["vmi"] = await self.write(writes) or memo.get("vmi")


def _key(body: kopf.Body) -> tuple[str, str]:
    return body.get("metadata", {}).get("namespace", ""), body.get("metadata", {}).get("name", "")


class NoDiffBase(kopf.DiffBaseStorage):
    """No "last handled" state: this controller has no change handlers (only events, indexes and a daemon that
    filters on the body), so kopf's per-event deep copy of every object's essence, and its annotation, would be
    work for nothing."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def _with_claims(body: kopf.Body, spec: dict[str, Any]) -> dict[tuple[str, ...], Any]:
    namespace, name = _key(body)
    entries: dict[tuple[str, ...], Any] = {(namespace, name): dict(body)}
    entries.update({("claim", namespace, claim): name for claim in claims(spec)})
    return entries


def _lookups(kwargs: dict[str, Any]) -> IndexLookups:
    return IndexLookups(
        vms=kwargs["vm_index"],
        vmis=kwargs["vmi_index"],
        pods=kwargs["pod_index"],
        pvcs=kwargs["pvc_index"],
        kvm_nodes=kwargs["kvm_node_index"],
    )


def _not_its_own_echo(memo: kopf.Memo, body: kopf.Body, **_: Any) -> bool:
    """False for the event of the VM status this controller just wrote (the version it remembers): nothing in
    it is news, and skipping it spares a reconcile per VM."""
    written = memo.get("vm")
    version = (body.get("metadata") or {}).get("resourceVersion")
    return written is None or (written.get("metadata") or {}).get("resourceVersion") != version


def _needs_daemon(memo: kopf.Memo, status: kopf.Status, **_: Any) -> bool:
    """A VM needs its daemon while a start failure is on record (its backoff ends, or is forgotten, with time)
    or a reconcile failed (retried)."""
    return bool(status.get("startFailure")) or bool(memo.get("retry"))


def register(controller: Controller, registry: kopf.OperatorRegistry | None = None) -> kopf.OperatorRegistry:
    """Register the handlers on ``registry`` (a fresh one by default: several operators may share a process)."""
    registry = registry or kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = 300
        settings.persistence.finalizer = "migrator.io/kopf-finalizer"
        settings.persistence.diffbase_storage = NoDiffBase()
        # only the launcher pods, selected by the API server: not every pod of the cluster, each an event
        settings.watching.label_selectors["", "v1", "pods"] = f"{LABEL_APP}=virt-launcher"
        # kopf logs every handler's success at INFO: a line per event and index, thousands a second
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(controller.kubeconfig)

    # Indexes: kopf's caches of the watched objects by (namespace, name), and of the claims the VMs and
    # instances wait for by ("claim", namespace, claim). One index per kind: each is a call per event.
    @kopf.index(GROUP, VERSION, VMS, registry=registry, id="vm_index")
    async def vm_index(body: kopf.Body, **_: Any) -> dict[tuple[str, ...], Any]:
        spec = (body.get("spec") or {}).get("template", {}).get("spec") or {}
        return _with_claims(body, spec)

    @kopf.index(GROUP, VERSION, VMIS, registry=registry, id="vmi_index")
    async def vmi_index(body: kopf.Body, **_: Any) -> dict[tuple[str, ...], Any]:
        return _with_claims(body, body.get("spec") or {})

    @kopf.index("", "v1", "pods", labels={LABEL_APP: "virt-launcher"}, registry=registry, id="pod_index")
    async def pod_index(body: kopf.Body, **_: Any) -> dict[tuple[str, str], dict[str, Any]]:
        return {_key(body): dict(body)}

    @kopf.index("", "v1", "persistentvolumeclaims", registry=registry, id="pvc_index")
    async def pvc_index(body: kopf.Body, **_: Any) -> dict[tuple[str, str], bool]:
        return {_key(body): True}

    @kopf.index("", "v1", "nodes", registry=registry, id="kvm_node_index")
    async def kvm_node_index(name: str, status: kopf.Status, **_: Any) -> dict[str, str] | None:
        try:  # KubeVirt's device plugin advertises "1k"
            offered = parse_quantity(str((status.get("allocatable") or {}).get(KVM_RESOURCE) or "0"))
        except ValueError:
            return None
        return {"kvm": name} if offered > 0 else None

    async def reconcile_vm(vm: dict[str, Any] | None, lookups: Lookups, memo: kopf.Memo | None = None) -> None:
        try:
            await controller.vm(vm, lookups, memo)
        except Exception:
            if memo is not None:
                memo["retry"] = True  # the VM's daemon retries it (it starts on this object's next cycle)
            raise
        if memo is not None:
            memo.pop("retry", None)

    @kopf.on.event(GROUP, VERSION, VMS, when=_not_its_own_echo, registry=registry)
    async def vm_event(type: str | None, event: kopf.RawEvent, memo: kopf.Memo, **kwargs: Any) -> None:
        if type != "DELETED":
            await reconcile_vm(event.get("object"), _lookups(kwargs), memo)

    @kopf.on.event(GROUP, VERSION, VMIS, registry=registry)
    async def vmi_event(
        namespace: str, type: str | None, body: kopf.Body, event: kopf.RawEvent, memo: kopf.Memo, **kwargs: Any
    ) -> None:
        lookups = _lookups(kwargs)
        if type != "DELETED":
            await controller.vmi(event.get("object"), lookups)
        view = rules.vm_view(None if type == "DELETED" else event.get("object"))
        if type is None or type == "ADDED" or memo.get("vm_view") == view:
            # ADDED: the VM that created it has accounted for it (the listing at start replays the VMs too);
            # the same view: nothing its VM reads has changed
            memo["vm_view"] = view
            return
        memo["vm_view"] = view
        for ref in body.get("metadata", {}).get("ownerReferences") or []:
            if ref.get("kind") == "VirtualMachine" and ref.get("controller"):
                await reconcile_vm(lookups.vm(namespace, ref["name"]), lookups)

    @kopf.on.event("", "v1", "pods", labels={LABEL_APP: "virt-launcher"}, registry=registry)
    async def pod_event(
        namespace: str, labels: kopf.Labels, type: str | None, event: kopf.RawEvent, memo: kopf.Memo, **kwargs: Any
    ) -> None:
        if labels.get(LABEL_DOMAIN):
            pod = None if type == "DELETED" else event.get("object")
            await controller.pod(namespace, labels[LABEL_DOMAIN], pod, _lookups(kwargs), memo)

    @kopf.on.event("", "v1", "persistentvolumeclaims", registry=registry)
    async def pvc_event(namespace: str, name: str, type: str | None, **kwargs: Any) -> None:
        if type == "DELETED":
            return
        lookups = _lookups(kwargs)
        for vmi_name in kwargs["vmi_index"].get(("claim", namespace, name), []):
            await controller.vmi(lookups.vmi(namespace, vmi_name), lookups)
        for vm_name in kwargs["vm_index"].get(("claim", namespace, name), []):
            await reconcile_vm(lookups.vm(namespace, vm_name), lookups)

    @kopf.daemon(GROUP, VERSION, VMS, when=_needs_daemon, cancellation_timeout=CANCELLATION_TIMEOUT, registry=registry)
    async def vm_clock(namespace: str, name: str, memo: kopf.Memo, stopped: kopf.DaemonStopped, **kwargs: Any) -> None:
        """Wait until time changes this VM's decision (or a failed reconcile is due again), then reconcile.

        What is due is recomputed from the indexes every CLOCK_TICK (pure, no API call): the instance may go
        or come meanwhile (a failed one is deleted, then the backoff runs from there) without telling it.
        """
        while not stopped:
            lookups = _lookups(kwargs)
            vm = lookups.vm(namespace, name)
            if vm is None:
                return
            delay = 0.0 if memo.get("retry") else rules.recheck_after(vm, lookups.vmi(namespace, name), rules.now_utc())
            if delay is None or delay > 0:
                await stopped.wait(CLOCK_TICK if delay is None else min(delay, CLOCK_TICK))
                continue
            try:
                await reconcile_vm(vm, lookups, memo)
                await controller.vmi(lookups.vmi(namespace, name), lookups)
            except ApiException as error:
                message = f"reconcile failed: {error.status} {error.reason}"
                raise kopf.TemporaryError(message, delay=RETRY_DELAY) from None
            await stopped.wait(CLOCK_TICK)  # what it wrote reaches the indexes before the next look

    return registry


def main(argv: list[str] | None = None) -> None:
    parser = agent_parser("python -m runtime.controller", "The runtime's controller.")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    # The indexes keep every watched object alive, and kopf allocates a few hundred objects per event: at
    # Python's default thresholds (700, 10, 10) the cyclic collector runs every few events and keeps
    # re-traversing the survivors (a fifth of the controller's CPU at 1,000 VMs). Most of what it frees goes by
    # reference counting; collecting the young generation every 3,000 allocations still bounds the cyclic rest.
    # At 10,000 the 5,000-VM memory test's RSS grew 13.7 % once (limit 10 %); at 3,000 it grew 0.9 %, for the
    # same CPU in bench-controller (5.5 CPU-s per 1,000 VMs, quiet machine).
    gc.set_threshold(*GC_THRESHOLDS)
    run_operator(register(Controller(args.kubeconfig)), args.namespace)


if __name__ == "__main__":
    main()
