"""Find or start the libvirt daemon the launcher talks to.

In a pod (and on a bare test machine) no libvirt daemon runs: the launcher, as root, starts
``virtlogd`` and ``libvirtd`` itself, as KubeVirt's virt-launcher starts its own virtqemud.
They use their stock configuration (``/run/libvirt``), which inside a pod is private to the
pod. When a daemon already answers on ``qemu:///system`` it is used as is.
"""

from __future__ import annotations

import grp
import logging
import os
import shutil
import socket
import stat
import subprocess
import sys

import libvirt

from core.errors import TargetError
from core.wait import wait_until

log = logging.getLogger(__name__)

SYSTEM_URI = "qemu:///system"
LIBVIRTD_SOCKET = "/run/libvirt/libvirt-sock"
VIRTLOGD_SOCKET = "/run/libvirt/virtlogd-sock"
KVM_DEVICE = "/dev/kvm"


def _quiet_libvirt() -> None:
    # libvirt prints every error to stderr by default; we report errors ourselves.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def _reachable(uri: str) -> bool:
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError:
        return False
    conn.close()
    return True


def _socket_answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


def _start_daemon(binary: str, socket_path: str, timeout: float, *, reaped: bool) -> None:
    if _socket_answers(socket_path):
        return
    path = shutil.which(binary) or f"/usr/sbin/{binary}"
    if not os.path.exists(path):
        raise TargetError(f"{binary} is not installed (Debian package libvirt-daemon-system)")
    log.info("starting %s", binary)
    if reaped:
        # in its own session, under a subreaper that reaps the QEMUs it daemonizes (see reaper.py);
        # it outlives the launcher, as the system service would
        subprocess.Popen(
            [sys.executable, "-m", "runtime.launcher.reaper", path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            cwd="/",
        )
    else:
        result = subprocess.run([path, "-d"], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise TargetError(f"{binary} failed to start: {result.stderr.strip().splitlines()[-1:]}")
    if not wait_until(lambda: _socket_answers(socket_path), timeout=timeout, interval=0.05):
        raise TargetError(f"{binary} started but {socket_path} did not appear within {timeout:.0f}s")


def _fix_kvm_permissions() -> None:
    """Give /dev/kvm the owner and mode Debian's udev rule gives it, where no udev ran (containers).

    With /dev/kvm root-only, libvirt's capability probe (run as libvirt-qemu) and its later
    validity check disagree about KVM, and libvirt re-probes QEMU on every call (seconds each).
    Whether KVM really works is decided by the accelerator probe, not by this.
    """
    try:
        info = os.stat(KVM_DEVICE)
        kvm_gid = grp.getgrnam("kvm").gr_gid
    except (OSError, KeyError):
        return
    if info.st_uid == 0 and info.st_gid == 0 and stat.S_IMODE(info.st_mode) == 0o600:
        log.info("%s: setting root:kvm 0660 (Debian's udev rule)", KVM_DEVICE)
        try:
            os.chown(KVM_DEVICE, 0, kvm_gid)
            os.chmod(KVM_DEVICE, 0o660)
        except OSError as error:
            log.info("%s: %s", KVM_DEVICE, error.strerror)


def ensure_libvirtd(uri: str | None = None, timeout: float = 30.0) -> str:
    """Return a libvirt URI that answers: ``uri`` if given, else the system daemon, started if needed."""
    _quiet_libvirt()
    if os.geteuid() == 0:
        _fix_kvm_permissions()
    if uri:
        if not _reachable(uri):
            raise TargetError(f"libvirt at {uri} is not reachable")
        return uri
    if _reachable(SYSTEM_URI):
        return SYSTEM_URI
    if os.geteuid() != 0:
        raise TargetError("no libvirt daemon answers on qemu:///system and starting one needs root")
    _start_daemon("virtlogd", VIRTLOGD_SOCKET, timeout, reaped=False)
    _start_daemon("libvirtd", LIBVIRTD_SOCKET, timeout, reaped=True)
    if not wait_until(lambda: _reachable(SYSTEM_URI), timeout=timeout, interval=0.1):
        raise TargetError(f"libvirtd started but {SYSTEM_URI} did not answer within {timeout:.0f}s")
    return SYSTEM_URI
