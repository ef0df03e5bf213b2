"""Debian packages for the test guest: fetched with `apt-get download`, never installed on the host.

The kernel (the exact package `linux-image-amd64` depends on) and systemd-boot's EFI binary
come from the archive as .deb files cached under the guest cache directory; busybox-static
and syslinux are used from the host, where scripts/install-deps.sh installs them.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from core.errors import MigratorError

# mtools refuses FAT images whose size is no multiple of its idea of a track without this
TOOL_ENV = {"MTOOLS_SKIP_CHECK": "1", "LC_ALL": "C"}


class GuestImageError(MigratorError):
    """The test guest could not be built (missing tool, package or archive)."""


def _tool_env() -> dict[str, str]:
    # sfdisk, mkfs.vfat and depmod live in /usr/sbin, outside a normal user's PATH
    path = os.environ.get("PATH", "/usr/bin:/bin")
    return {**os.environ, **TOOL_ENV, "PATH": f"{path}:/usr/sbin:/sbin"}


def run(cmd: list[str], *, cwd: Path | None = None, input_bytes: bytes | None = None) -> str:
    """Run a tool, returning its stdout; a failure becomes one GuestImageError line."""
    try:
        done = subprocess.run(cmd, cwd=cwd, input=input_bytes, capture_output=True, check=False, env=_tool_env())
    except FileNotFoundError as exc:
        raise GuestImageError(f"{cmd[0]} not found: install the project's Debian packages (`make deps`)") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
        last = detail[-1] if detail else f"exit status {done.returncode}"
        raise GuestImageError(f"{' '.join(cmd[:2])} failed: {last}")
    return done.stdout.decode(errors="replace")


def installed_version(package: str) -> str:
    """Version of a package installed on the host (busybox-static, syslinux)."""
    try:
        return run(["dpkg-query", "-W", "-f=${Version}", package]).strip()
    except GuestImageError as exc:
        raise GuestImageError(f"Debian package {package} is not installed (`make deps`)") from exc


def _candidate(package: str) -> str | None:
    out = run(["apt-cache", "policy", package])
    match = re.search(r"Candidate:\s*(\S+)", out)
    if not match or match.group(1) == "(none)":
        return None
    return match.group(1)


def candidate_version(package: str) -> str:
    """The archive's candidate version of a package, updating empty package lists once."""
    version = _candidate(package)
    if version is None:
        if os.geteuid() != 0:
            raise GuestImageError(f"no candidate for Debian package {package}: run `apt-get update` as root")
        run(["apt-get", "update", "-q"])
        version = _candidate(package)
    if version is None:
        raise GuestImageError(f"Debian package {package} is not in the configured archives")
    return version


def kernel_package() -> tuple[str, str]:
    """(name, version) of the kernel image package the `linux-image-amd64` metapackage depends on."""
    meta_version = candidate_version("linux-image-amd64")
    out = run(["apt-cache", "show", f"linux-image-amd64={meta_version}"])
    match = re.search(r"^Depends:.*?\b(linux-image-[0-9][^\s,(]*)\s*\(=\s*([^)\s]+)\)", out, re.MULTILINE)
    if not match:
        raise GuestImageError("cannot tell which kernel package linux-image-amd64 depends on")
    return match.group(1), match.group(2)


def download(package: str, version: str, into: Path) -> Path:
    """The .deb of package=version in `into`, downloading it with apt-get only when missing."""
    into.mkdir(parents=True, exist_ok=True)
    quoted = version.replace(":", "%3a")
    existing = sorted(into.glob(f"{package}_{quoted}_*.deb"))
    if existing:
        return existing[0]
    run(["apt-get", "download", "-q", f"{package}={version}"], cwd=into)
    found = sorted(into.glob(f"{package}_{quoted}_*.deb"))
    if not found:
        raise GuestImageError(f"apt-get download {package}={version} left no .deb in {into}")
    for stale in into.glob(f"{package}_*.deb"):  # older versions of the same package
        if stale not in found:
            stale.unlink(missing_ok=True)
    return found[0]


def extract(deb: Path, into: Path) -> None:
    """Unpack a .deb's files (not its scripts) into a directory, as `dpkg-deb -x` does."""
    into.mkdir(parents=True, exist_ok=True)
    run(["dpkg-deb", "-x", str(deb), str(into)])
