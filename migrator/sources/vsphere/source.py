"""The vSphere source: inventory through one retrieval, and what convert and cutover need."""

from __future__ import annotations

import logging
import ssl
from http.client import HTTPException
from typing import Any
from urllib.parse import quote

from pyVim.connect import Disconnect
from pyVmomi import vim, vmodl

from core.errors import InputError, NotFoundError, SourceError, SourceUnreachableError
from core.inventory import VM, Inventory
from migrator.sources import SourceOptions
from migrator.sources.credentials import read_password
from migrator.sources.vsphere import operations
from migrator.sources.vsphere.collector import (
    CONTEXT_PROPERTIES,
    ESTATE_PROPERTIES,
    PAGE_SIZE,
    RawObject,
    object_spec,
    retrieve_in_view,
)
from migrator.sources.vsphere.connection import (
    Location,
    certificate_thumbprint,
    connect,
    fault_message,
    fetch_certificate,
    parse_location,
    tls_context,
)
from migrator.sources.vsphere.fastsoap import FastCollector
from migrator.sources.vsphere.translate import Estate, host_affinity, translate_estate, translate_vm

log = logging.getLogger(__name__)


class VSphereSource:
    """A logged-in vCenter/ESXi session. Holds no password: only the live session."""

    def __init__(self, location: Location, options: SourceOptions) -> None:
        self.location = location
        self.url = location.url
        self.insecure = options.insecure
        self.page_size = PAGE_SIZE
        self._context = tls_context(
            location,
            insecure=options.insecure,
            thumbprint=options.thumbprint,
            ca_file=options.ca_file,
            thumbprint_from_plan=options.thumbprint_from_plan,
        )
        self._si = connect(location, read_password(options, f"{location.user}@{location.endpoint}"), self._context)
        # What a plan records (trust on first use); under --insecure too, so later commands can pin it.
        self.certificate_thumbprint: str | None = certificate_thumbprint(
            fetch_certificate(location.host, location.port)
        )
        self._content = self._si.RetrieveContent()
        # The collector every retrieval goes through (tests wrap it to count calls).
        self.property_collector: Any = FastCollector(self._content.propertyCollector)
        self._datacenter_ref: vim.Datacenter | None = None
        self._datastore_dcs: dict[str, str] | None = None
        if location.datacenter:
            self._datacenter_ref = self._find_datacenter(location.datacenter)

    # -- inventory ---------------------------------------------------------------------------

    @property
    def about(self) -> dict[str, str]:
        about = self._content.about
        facts = {
            "product": about.fullName or about.name,
            "api_type": about.apiType,
            "api_version": about.apiVersion,
            "instance_uuid": about.instanceUuid,
        }
        return {k: str(v) for k, v in facts.items() if v}

    def inventory(self) -> Inventory:
        """Every VM (templates flagged) from one paged retrieval."""
        objects = self._retrieve(ESTATE_PROPERTIES.keys(), ESTATE_PROPERTIES)
        log.debug("vSphere: %d managed objects retrieved from %s", len(objects), self.url)
        vms = translate_estate(Estate.from_objects(objects), datacenter=self.location.datacenter)
        log.info("vSphere: %d VM(s) in the inventory of %s", len(vms), self.url)
        return Inventory(source_url=self.url, vms=vms, about=self.about)

    def vm_inventory(self, name: str) -> VM:
        """Re-read one VM, translated exactly as ``inventory()`` does."""
        vm = self.find_vm(name)
        objects = self._retrieve(CONTEXT_PROPERTIES.keys(), ESTATE_PROPERTIES, extra=[object_spec(vm)])
        estate = Estate.from_objects(objects)
        raw = next((o for o in estate.vms if o.moid == vm._moId), None)
        if raw is None:
            raise NotFoundError(f"VM {name!r} not found on {self.url}")
        return translate_vm(raw, estate, host_affinity(estate))

    def inventory_of(self, vm_name: str) -> Inventory:
        """One VM's inventory (``SingleVMReader``): the VM re-read alone, with the source's facts."""
        return Inventory(source_url=self.url, vms=[self.vm_inventory(vm_name)], about=self.about)

    def find_vm(self, name: str) -> vim.VirtualMachine:
        """The VM called ``name`` (in the location's datacenter, when one is given)."""
        objects = self._retrieve([vim.VirtualMachine], {vim.VirtualMachine: ("name",)})
        matches = [o for o in objects if o.props.get("name") == name]
        if not matches:
            raise NotFoundError(f"VM {name!r} not found on {self.url}")
        if len(matches) > 1:
            ids = ", ".join(sorted(o.moid for o in matches))
            raise SourceError(f"VM name {name!r} is ambiguous on {self.url}: {ids}")
        return vim.VirtualMachine(matches[0].moid, self._si._stub)

    # -- cutover operations ------------------------------------------------------------------

    def power_state(self, name: str) -> str:
        """``poweredOn`` | ``poweredOff`` | ``suspended``."""
        return operations.power_state(self.find_vm(name))

    def power_off(self, name: str) -> None:
        operations.power_off(self.find_vm(name), name)

    def power_on(self, name: str) -> None:
        operations.power_on(self.find_vm(name), name)

    def shutdown_guest(self, name: str, timeout: float = 300.0) -> None:
        """Guest OS shutdown; raises ``ToolsNotRunningError`` (a SourceError) when Tools are not running."""
        operations.shutdown_guest(self.find_vm(name), name, timeout)

    def mark_migrated(self, name: str, note: str) -> bool:
        """Annotate the VM with ``note`` and set its ``migrator.target`` custom field (returns whether set)."""
        return operations.mark_migrated(self._content, self.find_vm(name), name, note)

    def unmark_migrated(self, name: str, note: str, annotation: str) -> bool:
        """Undo ``mark_migrated(name, note)``: the annotation as it was (``annotation``), the field cleared."""
        return operations.unmark_migrated(self._content, self.find_vm(name), name, note, annotation)

    def annotation(self, name: str) -> str:
        """The VM's note (vSphere's annotation) as it is now."""
        return str(self.find_vm(name).config.annotation or "")

    # -- datastore HTTP access for the disk engine ------------------------------------------

    def datastore_file_url(self, backing_file: str) -> str:
        """``"[LocalDS_0] vm/disk.vmdk"`` -> ``https://host:port/folder/vm/disk.vmdk?dcPath=DC0&dsName=LocalDS_0``."""
        datastore, path = split_datastore_path(backing_file)
        datacenter = self.location.datacenter or self._datastore_datacenter(datastore)
        query = f"dcPath={quote(datacenter, safe='')}&dsName={quote(datastore, safe='')}"
        return f"https://{self.location.endpoint}/folder/{quote(path, safe='/')}?{query}"

    def http_headers(self) -> dict[str, str]:
        """The live session's cookie, for GET/PUT on the datastore ``/folder`` endpoint."""
        cookie = self._si._stub.cookie or ""
        return {"Cookie": cookie.split(";", 1)[0].strip()} if cookie else {}

    def ssl_context(self) -> ssl.SSLContext:
        """The context this session uses: verifying, pinned to a thumbprint, or (--insecure only) unverified."""
        return self._context

    def keep_alive(self) -> None:
        """One cheap call (the server's clock), so that an idle session is not ended: vCenter ends a session
        idle for 30 minutes (its default), and a warm VM waits an hour between rounds (the default interval).
        The session is the one the rounds use; this keeps it, as govmomi's keepalive handler does."""
        try:
            self._si.CurrentTime()
        except vim.fault.NotAuthenticated:
            raise SourceError(
                f"the session on {self.location.endpoint} has ended (it was idle longer than the server allows): "
                "re-run to resume"
            ) from None
        except vmodl.MethodFault as fault:
            raise SourceError(f"{self.location.endpoint} did not answer a keep-alive: {fault_message(fault)}") from None
        except (OSError, HTTPException) as error:
            raise SourceUnreachableError(f"keep-alive to {self.location.endpoint} failed: {error}") from None

    @property
    def service_instance(self) -> vim.ServiceInstance:
        return self._si

    @property
    def content(self) -> vim.ServiceInstanceContent:
        return self._content

    def close(self) -> None:
        try:
            Disconnect(self._si)
        except Exception:  # closing a dead session must not mask the real error
            pass

    def __enter__(self) -> VSphereSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VSphereSource({self.url})"

    # -- internals -------------------------------------------------------------------------

    def _retrieve(
        self, types: Any, properties: dict[type, tuple[str, ...]], extra: list[Any] | None = None
    ) -> list[RawObject]:
        try:
            return retrieve_in_view(
                self._content,
                self.property_collector,
                types,
                properties,
                root=self._datacenter_ref,
                # The view starts below the datacenter: fetch the datacenter itself alongside.
                extra=[*(extra or ()), *([object_spec(self._datacenter_ref)] if self._datacenter_ref else [])],
                page_size=self.page_size,
            )
        except vmodl.MethodFault as fault:
            raise SourceError(f"reading the inventory of {self.url} failed: {fault_message(fault)}") from None
        except (OSError, HTTPException) as error:
            raise SourceError(f"lost the connection to {self.location.endpoint}: {error}") from None

    def _find_datacenter(self, name: str) -> vim.Datacenter:
        objects = self._retrieve([vim.Datacenter], {vim.Datacenter: ("name",)})
        for obj in objects:
            if obj.props.get("name") == name:
                return vim.Datacenter(obj.moid, self._si._stub)
        known = ", ".join(sorted(str(o.props.get("name")) for o in objects)) or "none"
        raise NotFoundError(f"datacenter {name!r} not found on {self.location.endpoint} (datacenters: {known})")

    def _datastore_datacenter(self, datastore: str) -> str:
        if self._datastore_dcs is None:
            types = [vim.Datastore, vim.Folder, vim.Datacenter]
            props = {t: ("name", "parent") for t in types}
            estate = Estate.from_objects(self._retrieve(types, props))
            self._datastore_dcs = {
                estate.names[m]: estate.datacenter_of(m) or ""
                for m, t in estate.types.items()
                if t == "Datastore" and m in estate.names
            }
        datacenter = self._datastore_dcs.get(datastore)
        if not datacenter:
            raise NotFoundError(f"datastore {datastore!r} not found on {self.url}")
        return datacenter


def split_datastore_path(backing_file: str) -> tuple[str, str]:
    """``"[ds] dir/file.vmdk"`` -> ``("ds", "dir/file.vmdk")``."""
    text = backing_file.strip()
    if not text.startswith("[") or "]" not in text:
        raise InputError(f"not a datastore path: {backing_file!r} (expected '[datastore] path')")
    end = text.index("]")
    return text[1:end], text[end + 1 :].strip()


def open_vsphere(location: str, options: SourceOptions) -> VSphereSource:
    """``location`` is what follows ``vsphere://``: ``user@host[:port][/datacenter]``."""
    return VSphereSource(parse_location(location), options)
