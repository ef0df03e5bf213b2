"""kopf registration of the controller: ``python -m runtime.controller [--kubeconfig F] [--namespace NS]``.

Every watched event (VirtualMachine, VirtualMachineInstance, launcher Pod, PersistentVolumeClaim, Node) reconciles
the objects it concerns, level-triggered, from the event's copy and the controller's cache of the others (no
reads; ``runtime.controller.cache``, kept by the same handlers):

- the handlers are coroutines: each decides without I/O (the reconcilers' ``plan``), then awaits the API
  writes that decision needs, if any, on the same event loop (``runtime.controller.api``);
- kopf serializes the events of one object, and drops its memo and daemon when it goes; the cache drops it on
  its DELETED event, and holds the handlers at start until what existed then is in;
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
from typing import Any

import kopf

from runtime.controller import status as rules
from runtime.controller.api import Api, ApiError, list_uids
from runtime.controller.cache import Cache, Kind, StartGate, uid_of
from runtime.controller.kube import connection_info, require_credentials
from runtime.controller.lookups import Lookups, newest
from runtime.controller.names import GROUP, LABEL_APP, LABEL_DOMAIN, VERSION, VMIS, VMS
from runtime.controller.vm import VmReconciler
from runtime.controller.vmi import VmiReconciler
from runtime.operator import agent_parser, configure_logging, run_operator

log = logging.getLogger("runtime.controller")
RETRY_DELAY = 5.0  # seconds before a failed reconcile runs again
CLOCK_TICK = 1.0  # how often a VM's daemon looks at the time (pure); only VMs with a start failure have one
CANCELLATION_TIMEOUT = 5.0
GC_THRESHOLDS = (3_000, 10, 10)
LAUNCHER_SELECTOR = f"{LABEL_APP}=virt-launcher"
WATCHED = (VMS, VMIS, "pods", "persistentvolumeclaims", "nodes")  # the kinds the cache holds (plurals)


class Controller:
    """The two reconcilers; ``register`` wires them to kopf's events and daemons, and keeps the cache.

    The handlers are coroutines: each decides from the event and the cache (``plan``, no I/O), then awaits
    the writes, if any. Most events need none: the echoes of the controller's own writes, a pod created but
    not yet bound.
    """

    def __init__(self, kubeconfig: str | None = None, image: str | None = None, namespace: str | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace  # what kopf watches: one namespace, or all (None)
        self.api = Api(lambda: connection_info(kubeconfig))
        self.vms = VmReconciler(self.api)
        self.vmis = VmiReconciler(self.api, image=image)
        self.cache = Cache()
        self.gate = StartGate()
        self.relisting: asyncio.Task[None] | None = None

    async def existing(self, plural: str) -> set[str]:
        """The uids of that kind that exist now, as the watch of that kind sees them (namespace, selector)."""
        namespace = None if plural == "nodes" else self.namespace
        selector = LAUNCHER_SELECTOR if plural == "pods" else ""
        return await list_uids(self.api, plural, namespace, selector)

    async def vm(self, vm: dict[str, Any] | None, lookups: Lookups, memo: Any = None) -> None:
        """Reconcile a VM. ``memo`` (the VM's own, in its worker) keeps the VM and the instance as last written
        here, newer than the event or the cache until the watch delivers them."""
        if vm is not None:
            _, writes = self.vms.plan(vm, lookups, memo)
            if writes is not None:
                await writes()

    async def vmi(self, vmi: dict[str, Any] | None, lookups: Lookups) -> None:
        writes = None if vmi is None else self.vmis.plan(vmi, lookups)
        if writes is not None:
            await writes()

    async def pod(self, namespace: str, vmi_name: str, pod: dict[str, Any] | None, lookups: Lookups, memo: Any) -> None:
        """A launcher pod changed: its instance follows. ``memo`` (the pod's) keeps the instance as last written
        here, newer than the cache until the watch delivers it: a write from a stale copy would be a 409."""
        cached = lookups.vmi(namespace, vmi_name)
        if cached is None:
            return
        writes = self.vmis.plan_follow(newest(cached, memo.get("vmi")), pod)
        if writes is not None:
            memo["vmi"] = await writes() or memo.get("vmi")


class NoDiffBase(kopf.DiffBaseStorage):
    """No "last handled" state: this controller has no change handlers (only events and a daemon that
    filters on the body), so kopf's per-event deep copy of every object's essence, and its annotation, would be
    work for nothing."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def _its_own_echo(memo: kopf.Memo, vm: dict[str, Any]) -> bool:
    """The event of the VM status this controller just wrote (the version it remembers): nothing in it is news
    but for the cache, and skipping its reconcile spares one per VM."""
    written = memo.get("vm")
    version = (vm.get("metadata") or {}).get("resourceVersion")
    return written is not None and (written.get("metadata") or {}).get("resourceVersion") == version


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
        settings.watching.label_selectors["", "v1", "pods"] = LAUNCHER_SELECTOR
        # kopf logs every handler's success at INFO: a line per event, thousands a second
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(controller.kubeconfig)

    cache, gate = controller.cache, controller.gate

    @kopf.on.startup(registry=registry)
    async def list_existing(**_: Any) -> None:
        """What exists before the watches start: the handlers wait until all of it has reached the cache."""
        gate.expect({plural: await controller.existing(plural) for plural in WATCHED})
        controller.relisting = asyncio.create_task(gate.relist_until_open(controller.existing))

    @kopf.on.cleanup(registry=registry)
    async def close_session(**_: Any) -> None:
        await controller.api.close()

    async def observe(kind: Kind, plural: str, type: str | None, obj: dict[str, Any]) -> None:
        kind.observe(type, obj)
        gate.arrive(plural, uid_of(obj))
        await gate.wait()

    async def reconcile_vm(vm: dict[str, Any] | None, lookups: Lookups, memo: kopf.Memo | None = None) -> None:
        try:
            await controller.vm(vm, lookups, memo)
        except Exception:
            if memo is not None:
                memo["retry"] = True  # the VM's daemon retries it (it starts on this object's next cycle)
            raise
        if memo is not None:
            memo.pop("retry", None)

    @kopf.on.event(GROUP, VERSION, VMS, registry=registry)
    async def vm_event(type: str | None, event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        vm = event["object"]
        await observe(cache.vms, VMS, type, vm)
        if type != "DELETED" and not _its_own_echo(memo, vm):
            await reconcile_vm(vm, cache, memo)

    @kopf.on.event(GROUP, VERSION, VMIS, registry=registry)
    async def vmi_event(namespace: str, type: str | None, event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        vmi = event["object"]
        await observe(cache.vmis, VMIS, type, vmi)
        if type != "DELETED":
            await controller.vmi(vmi, cache)
        view = rules.vm_view(None if type == "DELETED" else vmi)
        if type is None or type == "ADDED" or memo.get("vm_view") == view:
            # ADDED: the VM that created it has accounted for it (the listing at start replays the VMs too);
            # the same view: nothing its VM reads has changed
            memo["vm_view"] = view
            return
        memo["vm_view"] = view
        for ref in (vmi.get("metadata") or {}).get("ownerReferences") or []:
            if ref.get("kind") == "VirtualMachine" and ref.get("controller"):
                await reconcile_vm(cache.vm(namespace, ref["name"]), cache)

    # The launcher pods only: the API server selects them (``configure``), so no filter here.
    @kopf.on.event("", "v1", "pods", registry=registry)
    async def pod_event(
        namespace: str, labels: kopf.Labels, type: str | None, event: kopf.RawEvent, memo: kopf.Memo, **_: Any
    ) -> None:
        await observe(cache.pods, "pods", type, event["object"])
        if labels.get(LABEL_DOMAIN):
            pod = None if type == "DELETED" else event["object"]
            await controller.pod(namespace, labels[LABEL_DOMAIN], pod, cache, memo)

    @kopf.on.event("", "v1", "persistentvolumeclaims", registry=registry)
    async def pvc_event(namespace: str, name: str, type: str | None, event: kopf.RawEvent, **_: Any) -> None:
        await observe(cache.pvcs, "persistentvolumeclaims", type, event["object"])
        if type == "DELETED":
            return
        for vmi_name in cache.vmis.waiting_for(namespace, name):
            await controller.vmi(cache.vmi(namespace, vmi_name), cache)
        for vm_name in cache.vms.waiting_for(namespace, name):
            await reconcile_vm(cache.vm(namespace, vm_name), cache)

    @kopf.on.event("", "v1", "nodes", registry=registry)
    async def node_event(type: str | None, event: kopf.RawEvent, **_: Any) -> None:
        cache.observe_node(type, event["object"])
        gate.arrive("nodes", uid_of(event["object"]))

    @kopf.daemon(GROUP, VERSION, VMS, when=_needs_daemon, cancellation_timeout=CANCELLATION_TIMEOUT, registry=registry)
    async def vm_clock(namespace: str, name: str, memo: kopf.Memo, stopped: kopf.DaemonStopped, **_: Any) -> None:
        """Wait until time changes this VM's decision (or a failed reconcile is due again), then reconcile.

        What is due is recomputed from the cache every CLOCK_TICK (pure, no API call): the instance may go
        or come meanwhile (a failed one is deleted, then the backoff runs from there) without telling it.
        """
        while not stopped:
            vm = cache.vm(namespace, name)
            if vm is None:
                return
            delay = 0.0 if memo.get("retry") else rules.recheck_after(vm, cache.vmi(namespace, name), rules.now_utc())
            if delay is None or delay > 0:
                await stopped.wait(CLOCK_TICK if delay is None else min(delay, CLOCK_TICK))
                continue
            try:
                await reconcile_vm(vm, cache, memo)
                await controller.vmi(cache.vmi(namespace, name), cache)
            except ApiError as error:
                message = f"reconcile failed: {error}"
                raise kopf.TemporaryError(message, delay=RETRY_DELAY) from None
            await stopped.wait(CLOCK_TICK)  # what it wrote reaches the cache before the next look

    return registry


def main(argv: list[str] | None = None) -> None:
    parser = agent_parser("python -m runtime.controller", "The runtime's controller.")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    configure_logging(logging.DEBUG if args.verbose else logging.INFO)
    # The cache keeps every watched object alive, and kopf allocates a few hundred objects per event: at
    # Python's default thresholds (700, 10, 10) the cyclic collector runs every few events and keeps
    # re-traversing the survivors (a fifth of the controller's CPU at 1,000 VMs). Most of what it frees goes by
    # reference counting; collecting the young generation every 3,000 allocations still bounds the cyclic rest.
    # At 10,000 the 5,000-VM memory test's RSS grew 13.7 % once (limit 10 %); at 3,000 it grew 0.9 %, for the
    # same CPU in bench-controller (5.5 CPU-s per 1,000 VMs, quiet machine).
    require_credentials(args.kubeconfig)
    gc.set_threshold(*GC_THRESHOLDS)
    run_operator(register(Controller(args.kubeconfig, namespace=args.namespace)), args.namespace)


if __name__ == "__main__":
    main()
