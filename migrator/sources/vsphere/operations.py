"""What cutover does to a source VM: power, guest shutdown, marking it as migrated.

Each operation waits for its task and turns a failure into one SourceError line.
"""

from __future__ import annotations

import logging
from typing import Any

from pyVmomi import vim, vmodl

from core.errors import SourceError
from core.wait import wait_until
from migrator.sources.vsphere.connection import fault_message

MIGRATED_FIELD = "migrator.target"
TASK_POLL = 0.2  # seconds


log = logging.getLogger(__name__)


class ToolsNotRunningError(SourceError):
    """The guest cannot be asked to shut down (VMware Tools not running): fall back to power off."""


def wait_for_task(task: vim.Task, what: str, timeout: float = 600.0) -> Any:
    """Wait for ``task``; its error becomes ``SourceError("<what> failed: <fault>")``."""
    log.debug("vSphere task %s: %s", task, what)

    def finished() -> tuple[Any] | None:
        info = task.info
        if info.state == vim.TaskInfo.State.error:
            raise SourceError(f"{what} failed: {fault_message(info.error) if info.error else 'unknown error'}")
        return (info.result,) if info.state == vim.TaskInfo.State.success else None

    done = wait_until(finished, timeout=timeout, interval=TASK_POLL)
    if done is None:
        raise SourceError(f"{what} did not finish within {int(timeout)} s")
    return done[0]


def power_state(vm: vim.VirtualMachine) -> str:
    return str(vm.runtime.powerState)


def power_off(vm: vim.VirtualMachine, name: str) -> None:
    """Hard power off; a VM already off is left alone."""
    if power_state(vm) == vim.VirtualMachinePowerState.poweredOff:
        log.info("vSphere: %s is already powered off", name)
        return
    log.info("vSphere: powering off %s", name)
    _run(lambda: vm.PowerOffVM_Task(), f"power off {name}")


def power_on(vm: vim.VirtualMachine, name: str) -> None:
    """Power on; a VM already on is left alone."""
    if power_state(vm) == vim.VirtualMachinePowerState.poweredOn:
        log.info("vSphere: %s is already powered on", name)
        return
    log.info("vSphere: powering on %s", name)
    _run(lambda: vm.PowerOnVM_Task(), f"power on {name}")


def shutdown_guest(vm: vim.VirtualMachine, name: str, timeout: float = 300.0) -> None:
    """Ask the guest OS to shut down and wait until the VM is off.

    Raises ToolsNotRunningError when VMware Tools are not running (the caller may fall back
    to ``power_off``), SourceError when the guest does not stop within ``timeout``.
    """
    if power_state(vm) == vim.VirtualMachinePowerState.poweredOff:
        return
    tools = vm.guest.toolsRunningStatus
    if tools != vim.VirtualMachineToolsRunningStatus.guestToolsRunning:
        raise ToolsNotRunningError(f"cannot shut down the guest of {name}: VMware Tools are not running ({tools})")
    log.info("vSphere: asking the guest of %s to shut down (waiting up to %.0fs)", name, timeout)
    try:
        vm.ShutdownGuest()
    except (vim.fault.ToolsUnavailable, vim.fault.GuestOperationsUnavailable) as fault:
        raise ToolsNotRunningError(f"cannot shut down the guest of {name}: {fault_message(fault)}") from None
    except vmodl.MethodFault as fault:
        raise SourceError(f"guest shutdown of {name} failed: {fault_message(fault)}") from None
    if not wait_until(
        lambda: power_state(vm) == vim.VirtualMachinePowerState.poweredOff, timeout=timeout, interval=1.0
    ):
        raise SourceError(f"guest shutdown of {name} did not finish within {int(timeout)} s")


def mark_migrated(content: vim.ServiceInstanceContent, vm: vim.VirtualMachine, name: str, note: str) -> bool:
    """Append ``note`` to the VM's annotation, and set the ``migrator.target`` custom field.

    Returns whether the custom field was set (the server may have no CustomFieldsManager).
    """
    current = vm.config.annotation or ""
    if note not in current:
        annotation = f"{current.rstrip()}\n{note}" if current.strip() else note
        spec = vim.vm.ConfigSpec(annotation=annotation)
        _run(lambda: vm.ReconfigVM_Task(spec=spec), f"mark {name} as migrated")
    manager = content.customFieldsManager
    if manager is None:
        return False
    try:
        key = next(
            (
                f.key
                for f in manager.field or ()
                if f.name == MIGRATED_FIELD and f.managedObjectType in (None, vim.VirtualMachine)
            ),
            None,
        )
        if key is None:
            key = manager.AddCustomFieldDef(name=MIGRATED_FIELD, moType=vim.VirtualMachine).key
        manager.SetField(entity=vm, key=key, value=note)
    except vim.fault.DuplicateName:
        return False
    except vmodl.MethodFault as fault:
        raise SourceError(f"setting {MIGRATED_FIELD} on {name} failed: {fault_message(fault)}") from None
    return True


def unmark_migrated(
    content: vim.ServiceInstanceContent, vm: vim.VirtualMachine, name: str, note: str, annotation: str
) -> bool:
    """Undo ``mark_migrated(note)``: the annotation back to ``annotation`` (what it was before), the
    ``migrator.target`` field cleared. An annotation edited since keeps the edit, without ``note``.
    Returns whether anything changed."""
    current = vm.config.annotation or ""
    changed = False
    if note in current:
        marked = f"{annotation.rstrip()}\n{note}" if annotation.strip() else note
        restored = annotation if current == marked else "\n".join(line for line in current.split("\n") if line != note)
        log.info("vSphere: restoring the annotation of %s as it was before the cutover", name)
        _run(lambda: vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(annotation=restored)), f"restore the note of {name}")
        changed = True
    manager = content.customFieldsManager
    if manager is None:
        return changed
    key = next((f.key for f in manager.field or () if f.name == MIGRATED_FIELD), None)
    if key is None:
        return changed
    current_field = next((v.value for v in vm.customValue or () if v.key == key), "")
    if current_field:
        try:
            manager.SetField(entity=vm, key=key, value="")
        except vmodl.MethodFault as fault:
            raise SourceError(f"clearing {MIGRATED_FIELD} on {name} failed: {fault_message(fault)}") from None
        changed = True
    return changed


def _run(start: Any, what: str) -> Any:
    try:
        task = start()
    except vmodl.MethodFault as fault:
        raise SourceError(f"{what} failed: {fault_message(fault)}") from None
    return wait_for_task(task, what)
