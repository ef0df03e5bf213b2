"""The launcher: run one VM instance on libvirt/QEMU until it stops, and say how it stopped.

The domain is transient (``createXML``) and auto-destroyed with the launcher's libvirt
connection, so libvirt forgets it when it stops and kills QEMU if the launcher itself dies,
even by SIGKILL: no orphan QEMU, no leaked domain. Lifecycle events come from libvirt's
default event loop, run in a thread.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import signal
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt

from core.errors import MigratorError, TargetError
from runtime.domain import DomainOptions, domain_xml
from runtime.domain.network import default_mac
from runtime.launcher.api import ApiServer
from runtime.launcher.console import ConsoleServer
from runtime.launcher.contract import (
    API_SOCKET,
    CONSOLE_LOG,
    CONSOLE_SOCKET,
    DOMAIN_XML,
    NVRAM_FILE,
    PID_FILE,
    RESULT_FILE,
    Exit,
    Phase,
)
from runtime.launcher.libvirtd import ensure_libvirtd
from runtime.launcher.vmi import Instance, resolve_volumes

log = logging.getLogger("runtime.launcher")


@dataclass(frozen=True)
class Accelerator:
    kind: str
    reason: str


def choose_accelerator(mode: str) -> Accelerator:
    """``kvm``/``tcg`` as forced, or ``auto``: the probe that really starts a guest decides."""
    if mode in ("kvm", "tcg"):
        return Accelerator(mode, f"forced with --accel {mode}")
    from runtime.accel import probe_accelerator  # the probe starts QEMU once per boot: only when asked

    accel = probe_accelerator()
    return Accelerator(accel.kind, accel.reason)


@dataclass
class LauncherConfig:
    instance: Instance
    disk_root: Path
    state_dir: Path
    libvirt_uri: str | None = None
    accel: str = "auto"
    name: str | None = None
    forward_ports: bool = True


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Launcher:
    def __init__(self, config: LauncherConfig) -> None:
        self.config = config
        self.name = config.name or config.instance.name
        self.state_dir = config.state_dir
        self.phase: Phase = Phase.SCHEDULED
        self.domain_state = "none"
        self.reason = ""
        self.accelerator: Accelerator | None = None
        self.started_at: str | None = None
        self.interfaces: list[dict[str, str]] = []
        self.exit_status: Exit | None = None
        self.crashed = False
        self.destroyed_by_us = False
        self.stopped = threading.Event()
        self.terminate = threading.Event()
        self.lock = threading.Lock()
        self.conn: libvirt.virConnect | None = None
        self.domain: libvirt.virDomain | None = None
        self.servers: list[Any] = []

    # -- the API's view -------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        with self.lock:
            return {
                "name": self.name,
                "phase": self.phase,
                "domain_state": self.domain_state,
                "reason": self.reason,
                "accelerator": None
                if self.accelerator is None
                else {"kind": self.accelerator.kind, "reason": self.accelerator.reason},
                "interfaces": self.interfaces,
                "started_at": self.started_at,
                "pid": os.getpid(),
            }

    def _shutdown(self) -> None:
        domain = self._active_domain()
        if self.domain_state == "paused":
            domain.resume()  # a paused guest cannot see the ACPI button
        domain.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)

    def _destroy(self) -> None:
        """Power the guest off now, as the end of a grace period does: for a caller with a grace of its own."""
        domain = self._active_domain()
        self.destroyed_by_us = True
        log.info("destroy requested: powering the guest off")
        domain.destroy()

    def _pause(self) -> None:
        self._active_domain().suspend()
        # suspend() returns once the guest is paused: the answer says so, whether or not libvirt's event came
        with self.lock:
            self.phase, self.domain_state = Phase.PAUSED, "paused"

    def _unpause(self) -> None:
        self._active_domain().resume()
        with self.lock:
            self.phase, self.domain_state = Phase.RUNNING, "running"

    def _active_domain(self) -> libvirt.virDomain:
        if self.domain is None or self.stopped.is_set():
            raise TargetError("the guest is not running")
        return self.domain

    # -- libvirt events -------------------------------------------------------------------
    def _on_lifecycle(self, _conn: Any, domain: libvirt.virDomain, event: int, detail: int, _opaque: Any) -> None:
        if domain.name() != self.name:
            return
        with self.lock:
            # STARTED is the start path's to report: it sets the phase together with the interfaces. Taken here,
            # an early event said Running with no interface, and the instance's status listed none for a while.
            if event == libvirt.VIR_DOMAIN_EVENT_SUSPENDED:
                self.phase, self.domain_state = Phase.PAUSED, "paused"
            elif event == libvirt.VIR_DOMAIN_EVENT_RESUMED:
                self.phase, self.domain_state = Phase.RUNNING, "running"
            elif event == libvirt.VIR_DOMAIN_EVENT_SHUTDOWN:
                self.domain_state = "shutting-down"
            elif event == libvirt.VIR_DOMAIN_EVENT_CRASHED:
                self.crashed = True
                self.reason = "guest panicked"
            elif event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
                self.domain_state = "shutoff"
                self._stopped(detail)
        log.debug("domain event %s/%s → %s", event, detail, self.phase)

    def _stopped(self, detail: int) -> None:
        if self.crashed or detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED:
            self.phase, self.exit_status = Phase.FAILED, Exit.CRASHED
            self.reason = self.reason or Exit.CRASHED.meaning
        elif detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN:
            self.phase, self.exit_status, self.reason = Phase.SUCCEEDED, Exit.SHUTDOWN, Exit.SHUTDOWN.meaning
        elif detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED:
            self.phase, self.exit_status = Phase.FAILED, Exit.KILLED
            self.reason = Exit.KILLED.meaning if self.destroyed_by_us else "destroyed from outside"
        else:  # FAILED: QEMU died; or saved/migrated away, which this launcher never asks for
            self.phase, self.exit_status, self.reason = Phase.FAILED, Exit.CRASHED, "QEMU stopped unexpectedly"
        self.stopped.set()

    def _on_close(self, _conn: Any, reason: int, _opaque: Any) -> None:
        if not self.stopped.is_set():
            with self.lock:
                self.phase, self.exit_status = Phase.FAILED, Exit.CRASHED
                self.reason = f"lost the libvirt connection (reason {reason})"
            self.stopped.set()

    # -- lifecycle ------------------------------------------------------------------------
    def run(self) -> int:
        """Start the guest, serve the API and console, and return the exit status once it stopped."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / PID_FILE).write_text(f"{os.getpid()}\n")
        (self.state_dir / RESULT_FILE).unlink(missing_ok=True)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        status: int = Exit.FAILED_TO_START
        try:
            try:
                self._start()
            except MigratorError as error:
                self.reason = error.message
                log.error("%s", error.message)
                return status
            except libvirt.libvirtError as error:
                self.reason = f"libvirt refused the domain: {_one_line(error)}"
                log.error("%s", self.reason)
                return status
            except OSError as error:  # e.g. a socket path longer than AF_UNIX allows (108 bytes)
                self.reason = f"{getattr(error, 'filename', None) or 'state dir'}: {error.strerror or error}"
                log.error("%s", self.reason)
                return status
            status = self._watch()
            log.info("exit status %d: %s", status, self.reason)
            return status
        finally:
            self._cleanup()
            result = {"exit_status": int(status), "phase": str(self.phase), "reason": self.reason}
            if status == Exit.FAILED_TO_START:
                result["phase"] = Phase.FAILED
            (self.state_dir / RESULT_FILE).write_text(json.dumps(result) + "\n")
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        log.info("%s: shutting the guest down", signal.Signals(signum).name)
        self.terminate.set()

    def _start(self) -> None:
        config = self.config
        volumes = resolve_volumes(config.instance.spec, config.disk_root)
        console_log = self.state_dir / CONSOLE_LOG
        for stale in [console_log, *self.state_dir.glob(f"{CONSOLE_LOG}.*")]:
            stale.unlink(missing_ok=True)
        # served from now on: "Scheduled" while the daemon starts, the console from its first byte
        self.servers = [
            ApiServer(
                self.state_dir / API_SOCKET,
                self.status,
                {"shutdown": self._shutdown, "destroy": self._destroy, "pause": self._pause, "unpause": self._unpause},
            ),
            ConsoleServer(self.state_dir / CONSOLE_SOCKET, console_log, self.stopped.is_set),
        ]
        for server in self.servers:
            server.start()
        accelerator = choose_accelerator(config.accel)
        with self.lock:
            self.accelerator = accelerator
        log.info("accelerator: %s (%s)", accelerator.kind, accelerator.reason)
        options = DomainOptions(
            name=self.name,
            accelerator=accelerator.kind,  # type: ignore[arg-type]
            nvram_path=self.state_dir / NVRAM_FILE,
            console_log=console_log,
            port_forwards=None if config.forward_ports else {},
            run_as=(os.getuid(), os.getgid()),
        )
        xml = domain_xml(config.instance.spec, volumes, options)
        (self.state_dir / DOMAIN_XML).write_text(xml)
        if self.terminate.is_set():
            raise TargetError("terminated before the guest started")
        uri = ensure_libvirtd(config.libvirt_uri)
        libvirt.virEventRegisterDefaultImpl()
        threading.Thread(target=_event_loop, name="libvirt-events", daemon=True).start()
        self.conn = libvirt.open(uri)
        self.conn.registerCloseCallback(self._on_close, None)
        self.conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None)
        try:
            existing = self.conn.lookupByName(self.name)
        except libvirt.libvirtError:
            existing = None
        if existing is not None:
            raise TargetError(f"a domain named {self.name!r} already exists on {uri}")
        flags = libvirt.VIR_DOMAIN_START_AUTODESTROY
        if config.instance.start_paused:
            flags |= libvirt.VIR_DOMAIN_START_PAUSED
        self.domain = self.conn.createXML(xml, flags)
        with self.lock:
            self.started_at = _now()
            if self.phase == Phase.SCHEDULED:
                paused = config.instance.start_paused
                self.phase, self.domain_state = (Phase.PAUSED, "paused") if paused else (Phase.RUNNING, "running")
            self.interfaces = _interfaces(config.instance.spec, self.domain.XMLDesc(), self.name)
        log.info("domain %s started on %s (uri %s)", self.name, self.started_at, uri)

    def _watch(self) -> int:
        while not self.stopped.wait(0.2):
            if self.terminate.is_set():
                return self._terminate()
        return int(self.exit_status if self.exit_status is not None else Exit.CRASHED)

    def _terminate(self) -> int:
        grace = self.config.instance.grace_seconds
        try:
            self._shutdown()
            log.info("ACPI shutdown sent; grace period %ss", grace)
        except (libvirt.libvirtError, TargetError) as error:
            log.info("ACPI shutdown failed: %s", _one_line(error))
        if not self.stopped.wait(grace):
            log.info("the guest did not shut down within %ss: destroying it", grace)
            self.destroyed_by_us = True
            try:
                assert self.domain is not None
                self.domain.destroy()
            except libvirt.libvirtError as error:
                log.info("destroy: %s", _one_line(error))
            self.stopped.wait(10)
            with self.lock:
                self.phase, self.reason = Phase.FAILED, Exit.KILLED.meaning
            return Exit.KILLED
        return int(self.exit_status if self.exit_status is not None else Exit.CRASHED)

    def _cleanup(self) -> None:
        self.stopped.set()  # console clients get EOF, whatever happened
        for server in self.servers:
            server.shutdown()
            server.server_close()
        if self.domain is not None:
            try:
                if self.domain.isActive():
                    self.domain.destroy()
            except libvirt.libvirtError:
                pass  # already gone: transient domains vanish when they stop
        if self.conn is not None:
            try:
                self.conn.close()
            except libvirt.libvirtError:
                pass
        for name in (API_SOCKET, CONSOLE_SOCKET, PID_FILE):
            (self.state_dir / name).unlink(missing_ok=True)


def _event_loop() -> None:
    while True:
        libvirt.virEventRunDefaultImpl()


def _one_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[-1] if text else type(error).__name__


def _interfaces(spec: dict[str, Any], xml: str, domain_name: str) -> list[dict[str, str]]:
    """Each spec interface with the MAC the guest really has (libvirt's, where the spec gave none)."""
    macs = {}
    root = ET.fromstring(xml)
    for interface in root.iter("interface"):
        alias = interface.find("alias")
        mac = interface.find("mac")
        if alias is not None and mac is not None:
            macs[alias.get("name", "").removeprefix("ua-")] = mac.get("address", "")
    declared = (spec.get("domain") or {}).get("devices", {}).get("interfaces") or []
    if not declared:  # the NIC KubeVirt attaches by default
        return [{"name": name, "mac": mac} for name, mac in macs.items()]
    result = []
    for interface in declared:
        name = interface.get("name", "")
        mac = interface.get("macAddress") or macs.get(name) or default_mac(domain_name, name)
        result.append({"name": name, "mac": str(mac).lower()})
    return result
