"""Run a daemon (libvirtd) under a child subreaper that reaps every orphan below it.

libvirtd daemonizes QEMU, so a QEMU that exits is reparented to the nearest subreaper, or to
PID 1. In a container, PID 1 often never reaps (it is not an init): the dead QEMU stays a
zombie, and libvirt, which checks with kill(pid, 0) that it is gone, waits seconds for it on
every stop and every capability probe. This process is that subreaper (``prctl
PR_SET_CHILD_SUBREAPER``, as tini -s does): it runs the daemon in the foreground, reaps
everything, and exits with the daemon.

``python -m runtime.launcher.reaper PROGRAM [ARGS...]``
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_CHILD_SUBREAPER = 36


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m runtime.launcher.reaper PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"reaper: prctl failed: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
    child = os.fork()
    if child == 0:
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda number, _frame: os.kill(child, number))
    status = 0
    while True:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            return status
        except InterruptedError:
            continue
        if pid == child:
            status = os.waitstatus_to_exitcode(wait_status)
            # keep reaping until the daemon's orphans are gone too
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
