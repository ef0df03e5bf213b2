"""What the launcher promises the others: its exit statuses, its phases, the files of its state directory.

One module, used by the launcher itself, local mode (``runtime.local``), the controller (an exited launcher
pod's reason) and the node handler (``result.json`` after exit): none of them restates a number or a name.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Exit(IntEnum):
    """The launcher's exit status."""

    SHUTDOWN = 0  # the guest shut down
    FAILED_TO_START = 1  # the domain never ran: bad spec, missing disk, libvirt refused it
    CRASHED = 2  # the guest crashed or QEMU died
    KILLED = 3  # the guest did not shut down within its grace period and was destroyed

    @property
    def meaning(self) -> str:
        """In words, for a person (``migrator runtime stop``)."""
        return _MEANINGS[self]

    @property
    def reason(self) -> str:
        """As a Kubernetes reason (CamelCase), for an instance whose launcher pod exited with it."""
        return _REASONS[self]


_MEANINGS = {
    Exit.SHUTDOWN: "guest shut down",
    Exit.FAILED_TO_START: "failed to start",
    Exit.CRASHED: "guest crashed",
    Exit.KILLED: "killed after the grace period",
}
_REASONS = {
    Exit.SHUTDOWN: "GuestShutdown",
    Exit.FAILED_TO_START: "LauncherFailedToStart",
    Exit.CRASHED: "GuestCrashed",
    Exit.KILLED: "KilledAfterGracePeriod",
}


def exit_status(code: int) -> Exit | None:
    try:
        return Exit(code)
    except ValueError:
        return None


class Phase(StrEnum):
    """The phase the launcher reports (``GET /status``, ``result.json``): an instance's phase names."""

    SCHEDULED = "Scheduled"  # started, the domain not yet running
    RUNNING = "Running"
    PAUSED = "Paused"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


ALIVE = (Phase.RUNNING, Phase.PAUSED)
FINAL = (Phase.SUCCEEDED, Phase.FAILED)

# The state directory (``--state-dir``): one per instance.
API_SOCKET = "launcher.sock"  # the launcher's API (GET /status, POST /shutdown|/pause|/unpause)
CONSOLE_SOCKET = "console.sock"  # the serial console, from its first byte
CONSOLE_LOG = "console.log"  # everything the guest printed (virtlogd)
RESULT_FILE = "result.json"  # after exit: {"exit_status", "phase", "reason"}
PID_FILE = "launcher.pid"  # while it runs
DOMAIN_XML = "domain.xml"  # the libvirt domain it created
NVRAM_FILE = "nvram.fd"  # EFI variables
LAUNCHER_LOG = "launcher.log"  # local mode: the launcher's stdout and stderr
SOURCE_FILE = "source"  # local mode: the VM file it runs
RUN_LOCK = "run.lock"  # local mode: flock'ed by `migrator runtime run` and the launcher it starts (one per name)
