"""Local mode: run what ``migrator convert --output-dir`` wrote on this machine, through the launcher.

Each VM has a state directory ``<runtime dir>/<name>/`` (the launcher's ``--state-dir``:
``launcher.sock``, ``console.sock``, ``console.log``, NVRAM, ``launcher.log``, ``result.json``).
The runtime dir is ``$MIGRATOR_RUNTIME_DIR``, else ``/var/lib/migrator/runtime`` for root,
else ``~/.local/state/migrator/runtime``. The launcher runs in its own session, so it
outlives a detached ``run`` and a Ctrl-C reaches it only as the clean SIGTERM we send.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

from core.childenv import child_env
from core.errors import InputError, MigratorError, NotFoundError, TargetError
from core.private import open_fd, private_dir
from core.wait import wait_until
from runtime.launcher import api
from runtime.launcher.contract import (
    API_SOCKET,
    CONSOLE_LOG,
    CONSOLE_SOCKET,
    LAUNCHER_LOG,
    PID_FILE,
    RESULT_FILE,
    RUN_LOCK,
    SOURCE_FILE,
    Exit,
    Phase,
    exit_status,
)
from runtime.launcher.vmi import instance_from_document

EXIT_MEANINGS = {int(code): code.meaning for code in Exit}


def exit_meaning(code: int) -> str:
    known = exit_status(code)
    return known.meaning if known is not None else f"launcher exit status {code}"


class GuestStoppedError(TargetError):
    """The guest did not shut down cleanly; the exit code is the launcher's (2 crashed, 3 killed)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def runtime_dir() -> Path:
    configured = os.environ.get("MIGRATOR_RUNTIME_DIR")
    if configured:
        return Path(configured)
    if os.geteuid() == 0:
        return Path("/var/lib/migrator/runtime")
    return Path.home() / ".local" / "state" / "migrator" / "runtime"


@dataclass(frozen=True)
class LocalVM:
    name: str
    vm_file: Path
    disk_root: Path

    @property
    def state_dir(self) -> Path:
        return runtime_dir() / self.name


def _vm_documents(path: Path, *, strict: bool = False) -> list[dict[str, Any]]:
    """The YAML documents of ``path`` that are mappings; unreadable or not YAML: none, or InputError if strict."""
    try:
        return [doc for doc in yaml.safe_load_all(path.read_text()) if isinstance(doc, dict)]
    except UnicodeDecodeError:
        if strict:
            raise InputError(f"{path}: not a VirtualMachine YAML (not UTF-8 text)") from None
    except yaml.YAMLError as error:
        if strict:
            raise InputError(f"{path}: not YAML: {str(error).splitlines()[0]}") from None
    except OSError as error:
        if strict:
            raise InputError(f"{path}: {error.strerror}") from None
    return []


def find_vm(target: Path) -> LocalVM:
    """The VirtualMachine in an output directory (exactly one), or a VM YAML file; disks sit beside it."""
    if target.is_dir():
        candidates = [
            path
            for path in sorted([*target.glob("*.yaml"), *target.glob("*.yml"), *target.glob("*.json")])
            if any(doc.get("kind") in ("VirtualMachine", "VirtualMachineInstance") for doc in _vm_documents(path))
        ]
        if not candidates:
            raise NotFoundError(f"{target}: no VirtualMachine YAML (as written by `migrator convert --output-dir`)")
        if len(candidates) > 1:
            names = ", ".join(path.name for path in candidates)
            raise InputError(f"{target}: more than one VirtualMachine ({names}); give the YAML file instead")
        vm_file = candidates[0]
    elif target.is_file():
        vm_file = target
    else:
        raise NotFoundError(f"{target}: no such directory or file")
    kinds = ("VirtualMachine", "VirtualMachineInstance")
    documents = [doc for doc in _vm_documents(vm_file, strict=True) if doc.get("kind") in kinds]
    if len(documents) != 1:
        raise InputError(f"{vm_file}: expected one VirtualMachine, found {len(documents)}")
    name = (documents[0].get("metadata") or {}).get("name")
    if not name:
        raise InputError(f"{vm_file}: metadata.name is missing")
    return LocalVM(name=str(name), vm_file=vm_file.resolve(), disk_root=vm_file.parent.resolve())


def launcher_pid(state_dir: Path) -> int | None:
    """The pid of the launcher running in ``state_dir``, if one is alive."""
    try:
        pid = int((state_dir / PID_FILE).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"runtime.launcher" in cmdline else None


def _take_run_lock(vm: LocalVM) -> int:
    """The VM name's lock in the runtime dir (``<name>/run.lock``), or TargetError when another run holds it.

    Taken before anything in the state dir is touched, and inherited by the launcher, which holds it for as
    long as it runs: a second ``run`` of the same name, at the same moment or later, gets one line instead of
    a second launcher that would overwrite the first one's pid and sockets and orphan its guest.
    """
    state = vm.state_dir
    private_dir(state)
    descriptor = os.open(state / RUN_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise TargetError(f"{vm.name} is already running or starting (migrator runtime stop {vm.name})") from None
    return descriptor


def start(vm: LocalVM, accel: str = "auto") -> subprocess.Popen[bytes]:
    """Start the launcher for ``vm`` in its own session; its log goes to ``launcher.log``."""
    state = vm.state_dir
    lock = _take_run_lock(vm)
    try:
        if launcher_pid(state) is not None:
            raise TargetError(f"{vm.name} is already running (migrator runtime stop {vm.name})")
        return _spawn(vm, accel, lock)
    finally:
        os.close(lock)  # the launcher holds its own copy from now on


def _spawn(vm: LocalVM, accel: str, lock: int) -> subprocess.Popen[bytes]:
    state = vm.state_dir
    (state / RESULT_FILE).unlink(missing_ok=True)
    (state / SOURCE_FILE).write_text(f"{vm.vm_file}\n")
    command = [
        sys.executable,
        "-m",
        "runtime.launcher",
        "--vmi",
        str(vm.vm_file),
        "--disk-root",
        str(vm.disk_root),
        "--state-dir",
        str(state),
        "--accel",
        accel,
        # on a workstation the guest's pod-network ports are not published on the host's ports
        "--no-port-forwards",
    ]
    with os.fdopen(open_fd(state / LAUNCHER_LOG, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "wb") as log:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            env=child_env(),
            pass_fds=(lock,),
        )


def _last_log_line(state: Path) -> str:
    try:
        lines = [line for line in (state / LAUNCHER_LOG).read_text().splitlines() if line.strip()]
    except OSError:
        return "no launcher log"
    return lines[-1].removeprefix("launcher: ") if lines else "the launcher exited without a word"


def outcome(state: Path, code: int) -> None:
    """Raise for a launcher exit status other than 0, with the launcher's reason."""
    if code == Exit.SHUTDOWN:
        return
    if code == Exit.FAILED_TO_START:
        raise TargetError(_last_log_line(state))
    reason = result(state).get("reason") or exit_meaning(code)
    stopped = code if code in (Exit.CRASHED, Exit.KILLED) else Exit.CRASHED
    raise GuestStoppedError(f"{state.name}: {reason}", exit_code=int(stopped))


def result(state: Path) -> dict[str, Any]:
    try:
        return json.loads((state / RESULT_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def wait_started(vm: LocalVM, process: subprocess.Popen[bytes], timeout: float = 300.0) -> dict[str, Any] | None:
    """Wait until the launcher reports the domain created (phase past Scheduled) and return its status.

    None when the launcher already exited with status 0 (a guest that powered off at once).
    """
    sock = vm.state_dir / API_SOCKET
    exited = {"exited": True}

    def started() -> dict[str, Any] | None:
        code = process.poll()
        if code is not None:
            outcome(vm.state_dir, code)
            return exited
        if sock.exists():
            try:
                status = api.request(sock, "GET", "/status")
            except MigratorError:
                status = {}
            if status.get("phase") not in (None, Phase.SCHEDULED):
                return status
        return None

    status = wait_until(started, timeout=timeout, interval=0.05)
    if status is None:
        raise TargetError(f"{vm.name}: the launcher did not start the guest within {timeout:.0f}s")
    return None if status is exited else status


def stream_console(state: Path, out: IO[bytes], until_eof: bool = True) -> None:
    """Copy the console socket to ``out`` until the launcher closes it (the guest stopped)."""
    path = state / CONSOLE_SOCKET
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        try:
            connection.connect(str(path))
        except OSError as error:
            raise TargetError(f"{state.name}: console not available: {error.strerror}") from None
        while True:
            chunk = connection.recv(65536)
            if not chunk:
                return
            out.write(chunk)
            out.flush()


def run(vm: LocalVM, out: IO[bytes], accel: str = "auto", notify: Any = None) -> int:
    """Boot ``vm``, stream its console to ``out`` until it stops; SIGINT/SIGTERM stop it cleanly.

    Returns 0 when the guest shut down; raises with the launcher's reason otherwise.
    """
    process = start(vm, accel)
    stopping = False

    def stop_guest(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        if not stopping and process.poll() is None:
            stopping = True
            process.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop_guest) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        status = wait_started(vm, process)
        if status is None:  # already over: the log has everything the guest printed
            out.write((vm.state_dir / CONSOLE_LOG).read_bytes())
            out.flush()
        else:
            if notify is not None:
                notify(status)
            try:
                stream_console(vm.state_dir, out)
            except TargetError:
                if process.poll() is None:
                    raise
                out.write((vm.state_dir / CONSOLE_LOG).read_bytes())  # it stopped between the two
        code = process.wait()
    finally:
        if process.poll() is None:  # an error of ours: never leave the guest behind
            process.send_signal(signal.SIGTERM)
            process.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    outcome(vm.state_dir, code)
    return code


def state_of(name: str) -> Path:
    state = runtime_dir() / name
    if not state.is_dir():
        raise NotFoundError(f"no VM named {name!r} in {runtime_dir()}")
    return state


def status(name: str) -> dict[str, Any]:
    state = state_of(name)
    if launcher_pid(state) is not None:
        try:
            return api.request(state / API_SOCKET, "GET", "/status")
        except MigratorError:
            return {"name": name, "phase": Phase.SCHEDULED, "reason": "starting"}
    last = result(state)
    return {"name": name, "phase": last.get("phase", "Stopped"), "reason": last.get("reason", "not running")}


def list_vms() -> list[dict[str, Any]]:
    root = runtime_dir()
    if not root.is_dir():
        return []
    return [status(path.name) for path in sorted(root.iterdir()) if path.is_dir()]


def grace_seconds(name: str) -> int | None:
    """The grace period the launcher of ``name`` gives an ACPI shutdown (its spec's), if its VM file still reads."""
    try:
        vm_file = Path((state_of(name) / SOURCE_FILE).read_text().strip())
        documents = [d for d in _vm_documents(vm_file) if d.get("kind") in ("VirtualMachine", "VirtualMachineInstance")]
        return instance_from_document(documents[0], str(vm_file)).grace_seconds if documents else None
    except (OSError, MigratorError, ValueError, TypeError):
        return None


def stop(name: str, timeout: float | None = None, announce: Callable[[str], None] | None = None) -> int:
    """ACPI shutdown, the grace period, then destroy: SIGTERM to the launcher, which does all that.

    ``announce`` hears, before the wait, what the wait is: a guest that ignores ACPI takes its whole grace."""
    state = state_of(name)
    pid = launcher_pid(state)
    if pid is None:
        raise TargetError(f"{name} is not running")
    os.kill(pid, signal.SIGTERM)
    if announce is not None:
        grace = grace_seconds(name)
        period = f"its {grace}s grace period" if grace is not None else "its grace period"
        announce(f"{name}: ACPI shutdown sent; the guest is destroyed after {period} if it has not stopped")
    if not wait_until(lambda: launcher_pid(state) != pid, timeout=600 if timeout is None else timeout, interval=0.1):
        raise TargetError(f"{name}: the launcher (pid {pid}) did not stop")
    return int(result(state).get("exit_status", 0))
