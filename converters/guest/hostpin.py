"""The NIC-name pinning done from the host, without an appliance: e2fsprogs on the overlay's root filesystem.

Booting libguestfs's appliance only to write a ``.link`` file costs ~10 s under TCG (a second or two with KVM),
a tenth of a whole conversion. When the root partition's offset is known (``rootfs``), its filesystem is
ext2/3/4 and was cleanly unmounted, and the host can serve FUSE, the same pinning is done here instead:

1. ``qemu-storage-daemon`` exports the qcow2 overlay as a raw file (a FUSE export): what is written there goes
   into the overlay, never into the image under it, exactly as the appliance's writes would;
2. ``debugfs`` (e2fsprogs, userspace: the host kernel never mounts the guest's filesystem) lists the
   directories the guest's network configuration lives in, and copies the files it could name into a
   mirror of those paths on the host;
3. the very script the appliance would run in the guest (``netnames.pin_script``) runs against the mirror:
   one implementation of the decision, whichever way the files are reached;
4. the files it wrote (the ``.link`` files, or the udev rule) go back into the guest with ``debugfs -w``,
   owned by root, mode 0644, and are read back to check them.

Anything this path cannot do faithfully raises ``HostPinUnavailable``, almost always before the guest is
written to (an XFS or LVM root, a journal that needs recovery, a configuration file that is a symbolic link,
no FUSE in a pod); the caller then starts again from fresh overlays and pins in the appliance, as before.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from converters.guest import netnames
from converters.guest.model import NicPin
from converters.guest.rootfs import RootPartition
from core.wait import wait_until

DEBUGFS = "debugfs"
DUMPE2FS = "dumpe2fs"
STORAGE_DAEMON = "qemu-storage-daemon"
EXPORT_TIMEOUT = 10.0  # seconds for the FUSE export to appear
# What the pin script reads besides the configuration: the root's markers and the systemd directories.
MARKER_DIRS = ("/etc", "/usr/lib")
# Listed too, so that a configuration directory that is a symbolic link (debugfs lists no link) is seen as one.
PARENT_DIRS = ("/etc/NetworkManager", "/etc/sysconfig")
SYSTEMD_NETWORK_DIRS = ("/lib/systemd/network", "/usr/lib/systemd/network")
# The directories the written files go into, listed to know what exists already.
WRITE_DIRS = ("/etc/systemd", "/etc/systemd/network", "/etc/udev", "/etc/udev/rules.d")
_SAFE_NAME = re.compile(r"^[^\x00-\x1f\x7f\"\\]+$")  # what debugfs's command line quoting can carry


class HostPinUnavailable(Exception):
    """The host cannot pin this guest's NIC names faithfully (or could not check what it wrote): the appliance
    does it instead, on fresh overlays."""


@dataclass(frozen=True)
class Entry:
    name: str
    mode: int
    uid: int = 0
    gid: int = 0

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)


Listings = dict[str, dict[str, Entry] | None]  # directory → its entries (None: it does not exist)


def unavailable_reason() -> str | None:
    """Why this host cannot do the pinning itself (None: it can), before anything is started."""
    for tool in (STORAGE_DAEMON, DEBUGFS, DUMPE2FS):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as error:
        return f"no FUSE here (/dev/fuse: {error.strerror})"
    return None


# --- pure: debugfs's output, the mirror, the commands ------------------------------------------------------


def parse_listings(output: str) -> Listings:
    """``debugfs -f`` output of ``ls -p DIR`` commands → each directory's entries (None: it does not exist).

    debugfs echoes each command (``debugfs: ls -p /etc``) and ``ls -p`` prints ``/inode/mode/uid/gid/name/size/``
    per entry; a directory that does not exist prints nothing there (its error goes to stderr)."""
    listings: Listings = {}
    current: str | None = None
    for line in output.splitlines():
        if line.startswith("debugfs: "):
            command = line[len("debugfs: ") :]
            current = _unquote(command[len("ls -p ") :]) if command.startswith("ls -p ") else None
            if current is not None:
                listings[current] = None
            continue
        parts = line.split("/")
        if current is None or len(parts) != 8 or parts[0] or parts[7]:
            continue
        try:
            mode, uid, gid = int(parts[2], 8), int(parts[3]), int(parts[4])
        except ValueError:
            continue
        entries = listings[current] if listings[current] is not None else {}
        if parts[5] not in (".", ".."):
            entries[parts[5]] = Entry(parts[5], mode, uid, gid)
        listings[current] = entries
    return listings


def config_patterns() -> list[tuple[str, str]]:
    """(directory, name pattern) for each of the pin script's configuration globs."""
    return [(str(PurePosixPath(g).parent), PurePosixPath(g).name) for g in netnames.CONFIG_GLOBS]


def directories_to_list() -> list[str]:
    dirs = [*MARKER_DIRS, *PARENT_DIRS, *SYSTEMD_NETWORK_DIRS, *(d for d, _ in config_patterns()), *WRITE_DIRS]
    return list(dict.fromkeys(dirs))


def refuse_linked_directories(listings: Listings) -> None:
    """A directory the script reads or writes that is a symbolic link in the guest: debugfs does not follow a
    path's last link (``ls -p`` finds no directory there), the guest's shell would. HostPinUnavailable."""
    for directory in listings:
        parent, name = _split(directory)
        entry = (listings.get(str(parent)) or {}).get(name)
        if listings[directory] is None and entry is not None and stat.S_ISLNK(entry.mode):
            raise HostPinUnavailable(f"{directory} is a symbolic link in the guest")


def files_to_mirror(listings: Listings) -> list[str]:
    """The guest files the pin script could read: those its globs match (dot files aside, as the shell's ``*``),
    and the udev rule it appends to. A match that is not a regular file (a symbolic link: its target is the
    guest's, not the host's) cannot be mirrored faithfully: HostPinUnavailable."""
    wanted: list[str] = []
    patterns = [*config_patterns(), tuple(str(p) for p in _split(netnames.UDEV_FILE))]
    for directory, pattern in patterns:
        for entry in sorted((listings.get(directory) or {}).values(), key=lambda e: e.name):
            if entry.name.startswith(".") or not fnmatch.fnmatchcase(entry.name, pattern):
                continue
            path = f"{directory}/{entry.name}"
            if entry.is_dir:
                continue  # the script's ``[ -f ]`` skips directories too
            if not entry.is_file:
                raise HostPinUnavailable(f"{path} is not a regular file (a link?)")
            if not _SAFE_NAME.match(entry.name):
                raise HostPinUnavailable(f"{path!r}: a name debugfs's command line cannot carry")
            wanted.append(path)
    return list(dict.fromkeys(wanted))


def _split(path: str) -> tuple[PurePosixPath, str]:
    pure = PurePosixPath(path)
    return pure.parent, pure.name


def mirror_skeleton(listings: Listings) -> tuple[list[str], list[str]]:
    """(directories, empty files) the mirror needs so that the script's tests see the guest: the root's markers
    (``/etc/os-release``, ``/usr/lib/os-release``, ``/etc/fstab``: any kind of entry), the systemd directories."""
    files = [
        f"{directory}/{name}"
        for directory, name in (("/etc", "os-release"), ("/usr/lib", "os-release"), ("/etc", "fstab"))
        if name in (listings.get(directory) or {})
    ]
    dirs = [d for d in (*SYSTEMD_NETWORK_DIRS, *WRITE_DIRS) if listings.get(d) is not None]
    return dirs, files


def written_files(pins: list[NicPin]) -> list[str]:
    """The guest paths the script wrote for these pins."""
    paths = [netnames.LINK_FILE.format(name=p.name) if p.method == "systemd-link" else netnames.UDEV_FILE for p in pins]
    return list(dict.fromkeys(paths))


def write_commands(files: dict[str, Path], listings: Listings) -> list[str]:
    """debugfs commands that put each guest path (→ host file holding its content) into the guest: missing
    directories made (0755, root's), an existing file replaced, the new one root's with mode 0644."""
    commands: list[str] = []
    made: set[str] = set()
    for guest_path, host_file in files.items():
        parent, name = _split(guest_path)
        for ancestor in [*reversed(parent.parents[:-1]), parent]:
            key = str(ancestor)
            if listings.get(key) is None and key not in made and key not in MARKER_DIRS:
                commands.append(f"mkdir {_quote(key)}")
                made.add(key)
        commands.append(f"cd {_quote(str(parent))}")
        if name in (listings.get(str(parent)) or {}):
            commands.append(f"rm {_quote(name)}")
        commands.append(f"write {_quote(str(host_file))} {_quote(name)}")
        commands += [
            f"sif {_quote(name)} {field} {value}" for field, value in (("mode", "0100644"), ("uid", "0"), ("gid", "0"))
        ]
    return commands


def _quote(text: str) -> str:
    if not _SAFE_NAME.match(text):
        raise HostPinUnavailable(f"{text!r}: a path debugfs's command line cannot carry")
    return f'"{text}"'


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def clean_ext_filesystem(dumpe2fs_header: str) -> str | None:
    """``dumpe2fs -h`` output → why debugfs must not write this filesystem (None: it may)."""
    fields = dict(
        (key.strip(), value.strip())
        for key, sep, value in (line.partition(":") for line in dumpe2fs_header.splitlines())
        if sep
    )
    if "Filesystem features" not in fields:
        return "the root is not an ext2/3/4 filesystem"
    if "needs_recovery" in fields["Filesystem features"].split():
        return "the root filesystem's journal needs recovery (it was not cleanly unmounted)"
    if fields.get("Filesystem state") != "clean":
        return f"the root filesystem's state is {fields.get('Filesystem state') or 'unknown'}, not clean"
    return None


# --- I/O: the export, debugfs, the script ------------------------------------------------------------------


@contextmanager
def raw_view(overlay: Path, mountpoint: Path, log: IO[str], die_with_us: list[str]) -> Iterator[Path]:
    """The qcow2 ``overlay`` seen as a raw file at ``mountpoint`` (qemu-storage-daemon's FUSE export): writes go
    into the overlay. Stopped on exit; a mount a killed run left there is lazily unmounted first."""
    _unmount(mountpoint)
    mountpoint.parent.mkdir(parents=True, exist_ok=True)
    mountpoint.touch()
    blockdev = {"driver": "qcow2", "node-name": "disk", "file": {"driver": "file", "filename": str(overlay)}}
    export = {
        "type": "fuse",
        "id": "view",
        "node-name": "disk",
        "mountpoint": str(mountpoint),
        "writable": True,
        "allow-other": "off",
    }
    argv = [STORAGE_DAEMON, "--blockdev", json.dumps(blockdev), "--export", json.dumps(export)]
    log.write(f"$ {' '.join(argv)}\n")
    log.flush()
    output = tempfile.TemporaryFile("w+", errors="replace")  # what it says, copied to ``log`` once it is gone
    daemon = subprocess.Popen([*die_with_us, *argv], stdin=subprocess.DEVNULL, stdout=output, stderr=output)
    try:
        mounted = wait_until(
            lambda: _is_mounted(mountpoint) or daemon.poll() is not None, timeout=EXPORT_TIMEOUT, interval=0.01
        )
        if not mounted or not _is_mounted(mountpoint):
            raise HostPinUnavailable(f"{STORAGE_DAEMON} could not export the overlay through FUSE (see the log)")
        yield mountpoint
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        output.seek(0)
        log.write(output.read())
        output.close()
        _unmount(mountpoint)
        mountpoint.unlink(missing_ok=True)


def _is_mounted(path: Path) -> bool:
    try:
        return path.stat().st_dev != path.parent.stat().st_dev
    except FileNotFoundError:
        return False
    except OSError:
        return True  # "transport endpoint is not connected": a FUSE mount whose daemon is gone


def _unmount(path: Path) -> None:
    if not _is_mounted(path):
        return
    for argv in (["umount", "-l", str(path)], ["fusermount3", "-uz", str(path)]):
        if shutil.which(argv[0]) and subprocess.run(argv, capture_output=True).returncode == 0:
            return


def _debugfs(device: str, commands: list[str], log: IO[str], *, write: bool = False) -> str:
    with tempfile.NamedTemporaryFile("w", prefix="migrator-debugfs-", suffix=".cmds") as script:
        script.write("\n".join(commands) + "\n")
        script.flush()
        argv = [DEBUGFS, *(["-w"] if write else []), "-f", script.name, device]
        done = subprocess.run(argv, capture_output=True, text=True, errors="surrogateescape")
    log.write(f"$ {' '.join(argv)}\n" + "".join(f"#   {c}\n" for c in commands) + done.stdout + done.stderr)
    if done.returncode != 0:
        raise HostPinUnavailable(f"debugfs exited with status {done.returncode}")
    return done.stdout


def pin_from_host(
    pins: list[tuple[str, str]], overlay: Path, root: RootPartition, view: Path, log: IO[str], die_with_us: list[str]
) -> tuple[str, float]:
    """Pin (mac, name) pairs in the guest's root on ``overlay`` (its partition ``root``) from the host, through a
    FUSE view at ``view``. The pin script's output (its PIN lines), and the seconds it took."""
    started = time.monotonic()
    reason = unavailable_reason()
    if reason is None and root.offset is None:
        reason = "the root partition's offset is not known"
    if reason is not None:
        raise HostPinUnavailable(reason)
    try:
        return _pin_through_view(pins, overlay, root, view, log, die_with_us), time.monotonic() - started
    except OSError as error:  # a stale mount that would not go, a full disk, a tool gone meanwhile
        raise HostPinUnavailable(str(error)) from error


def _pin_through_view(
    pins: list[tuple[str, str]], overlay: Path, root: RootPartition, view: Path, log: IO[str], die_with_us: list[str]
) -> str:
    with raw_view(overlay, view, log, die_with_us) as raw, tempfile.TemporaryDirectory(prefix="migrator-pin-") as tmp:
        device = f"{raw}?offset={root.offset}"
        header = subprocess.run([DUMPE2FS, "-h", device], capture_output=True, text=True, errors="replace")
        said = (header.stderr.strip().splitlines() or [""])[-1]
        refused = clean_ext_filesystem(header.stdout) if header.returncode == 0 else f"dumpe2fs cannot read it: {said}"
        if refused:
            raise HostPinUnavailable(refused)
        listings = parse_listings(_debugfs(device, [f"ls -p {_quote(d)}" for d in directories_to_list()], log))
        refuse_linked_directories(listings)
        mirror = Path(tmp) / "root"
        dirs, markers = mirror_skeleton(listings)
        for directory in dirs:
            (mirror / directory.lstrip("/")).mkdir(parents=True, exist_ok=True)
        for marker in markers:
            (mirror / marker.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (mirror / marker.lstrip("/")).touch()
        copies = files_to_mirror(listings)
        for path in copies:
            (mirror / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        if copies:
            _debugfs(device, [f"dump {_quote(p)} {_quote(str(mirror / p.lstrip('/')))}" for p in copies], log)
        for path in copies:  # dump prints its errors only: a file it did not write is an error
            if not (mirror / path.lstrip("/")).is_file():
                raise HostPinUnavailable(f"debugfs could not read {path} (see the log)")
        script = Path(tmp) / "pin.sh"
        script.write_text(netnames.pin_script(pins, root=str(mirror)))
        ran = subprocess.run(["sh", str(script)], capture_output=True, text=True, errors="replace")
        log.write(f"$ sh pin.sh (root {mirror})\n{ran.stdout}{ran.stderr}")
        if ran.returncode != 0:
            raise HostPinUnavailable(f"the pin script exited with status {ran.returncode}")
        if netnames.NOT_ROOT in ran.stdout:
            raise HostPinUnavailable(f"{root.device} is not the guest's root")
        found, _ = netnames.parse_pins(ran.stdout)
        files = {p: mirror / p.lstrip("/") for p in written_files(found)}
        if files:
            _debugfs(device, write_commands(files, listings), log, write=True)
            _check_written(device, files, Path(tmp) / "check", log)
    return ran.stdout


def _check_written(device: str, files: dict[str, Path], check: Path, log: IO[str]) -> None:
    """Read back what was written: the same bytes, a regular file of root's with mode 0644."""
    check.mkdir()
    names = {p: check / f"{i}" for i, p in enumerate(files)}
    output = _debugfs(
        device,
        [f"dump {_quote(p)} {_quote(str(h))}" for p, h in names.items()]
        + [f"ls -p {_quote(d)}" for d in dict.fromkeys(str(PurePosixPath(p).parent) for p in files)],
        log,
    )
    listings = parse_listings(output)
    for path, host_file in files.items():
        parent, name = _split(path)
        entry = (listings.get(str(parent)) or {}).get(name)
        copy = names[path]
        as_written = entry is not None and (entry.mode, entry.uid, entry.gid) == (0o100644, 0, 0)
        if not as_written or not copy.is_file() or copy.read_bytes() != host_file.read_bytes():
            raise HostPinUnavailable(f"{path} did not read back from the guest as it was written")
