"""`make bench-disks`: the disk engine against its peers (issue 3).

1. disks-local: a monolithicSparse VMDK, 16 GiB virtual with 2 GiB of random data → raw.
   Peer: plain `qemu-img convert -O raw`; floor: `cat` of the same 2 GiB.
2. disks-http: a 4 GiB flat VMDK (descriptor + -flat extent) holding 1 GiB of data, served by
   the vSphere simulator's `/folder` datastore endpoint (HTTPS) → raw. Peer: `curl` of the extent.

Each command runs 3 times, interleaved, after `sync`, with warm source caches; medians printed.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GiB = 1 << 30
MiB = 1 << 20
RUNS = 3
PY = sys.executable


def _run(cmd: list[str], *, env: dict[str, str] | None = None, shell_out: Path | None = None) -> tuple[float, int]:
    """Run a command; return (seconds, peak RSS in KiB) of that child alone."""
    subprocess.run(["sync"], check=True)
    stdout = open(shell_out, "wb") if shell_out else subprocess.DEVNULL
    try:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, env=env)
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
    finally:
        if shell_out:
            stdout.close()  # type: ignore[union-attr]
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"bench-disks: {' '.join(cmd[:3])} failed: {err.strip()[-300:]}")
    return seconds, usage.ru_maxrss


def _random_regions(raw: Path, floor: Path | None, size: int, regions: list[int], region_bytes: int) -> None:
    fd = os.open(raw, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    out = os.open(floor, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644) if floor else -1
    try:
        os.ftruncate(fd, size)
        for base in regions:
            for off in range(0, region_bytes, 64 * MiB):
                data = os.urandom(64 * MiB)
                os.pwrite(fd, data, base + off)
                if out >= 0:
                    os.write(out, data)
    finally:
        os.close(fd)
        if out >= 0:
            os.close(out)


def _warm(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(64 * MiB):
            pass


def _ours_env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _clean(*paths: Path) -> None:
    for p in paths:
        p.unlink(missing_ok=True)
        for extra in p.parent.glob(f".{p.name}.transfer*"):
            extra.unlink()


def bench_local(work: Path) -> tuple[float, float, float, int]:
    src = work / "src.vmdk"
    raw = work / "src.raw"
    floor = work / "floor.bin"
    _random_regions(raw, floor, 16 * GiB, [1 * GiB, 5 * GiB, 9 * GiB, 13 * GiB], 512 * MiB)
    subprocess.run(["qemu-img", "convert", "-O", "vmdk", "-o", "subformat=monolithicSparse", raw, src], check=True)
    raw.unlink()
    _warm(src)
    _warm(floor)
    ours_out, peer_out, cat_out = work / "ours.img", work / "peer.img", work / "cat.bin"
    ours, peer, cat, rss, unverified = [], [], [], [], []
    env = _ours_env()
    for i in range(RUNS):
        steps = ["ours", "peer", "cat", "unverified"]
        for step in steps[i % 4 :] + steps[: i % 4]:
            _clean(ours_out, peer_out, cat_out)
            if step == "ours":
                s, r = _run([PY, "-m", "converters.disks", "--progress", "none", str(src), str(ours_out)], env=env)
                ours.append(s)
                rss.append(r)
                if i == 0:
                    subprocess.run(["qemu-img", "compare", "-q", str(src), "-F", "raw", str(ours_out)], check=True)
            elif step == "unverified":
                cmd = [PY, "-m", "converters.disks", "--progress", "none", "--no-verify", str(src), str(ours_out)]
                unverified.append(_run(cmd, env=env)[0])
            elif step == "peer":
                peer.append(_run(["qemu-img", "convert", "-O", "raw", str(src), str(peer_out)])[0])
            else:
                cat.append(_run(["cat", str(floor)], shell_out=cat_out)[0])
    _clean(ours_out, peer_out, cat_out)
    src.unlink()
    floor.unlink()
    print(
        f"disks-local runs: ours={_fmt(ours)} qemu-img={_fmt(peer)} cat-2GiB={_fmt(cat)}",
        f"ours-without-read-back-verification={_fmt(unverified)} ours-peak-rss={max(rss) // 1024} MiB",
    )
    return statistics.median(ours), statistics.median(peer), statistics.median(cat), max(rss)


def bench_http(work: Path) -> tuple[float, float]:
    from pyVim.connect import Disconnect, SmartConnect

    from migrator import simulator

    sim = simulator.start()
    try:
        si = SmartConnect(
            host=sim.host, port=sim.port, user=sim.username, pwd=sim.password, disableSslCertValidation=True
        )
        try:
            cookie = si._stub.cookie
            datastore = si.RetrieveContent().rootFolder.childEntity[0].datastore[0]
            ds_dir = Path(datastore.info.url)
            ds_name = datastore.name
        finally:
            Disconnect(si)
        folder = ds_dir / "bench-disk"
        folder.mkdir()
        size = 4 * GiB
        # Files are placed straight into the simulator's datastore directory (a PUT of 4 GiB
        # through vcsim would only add set-up time); every byte read below goes over HTTPS.
        _random_regions(folder / "disk-flat.vmdk", None, size, [0, 1 * GiB, 2 * GiB + 512 * MiB, 3 * GiB], 256 * MiB)
        (folder / "disk.vmdk").write_text(
            '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="vmfs"\n\n'
            f'RW {size // 512} VMFS "disk-flat.vmdk"\n\n# The Disk Data Base\n#DDB\nddb.adapterType = "lsilogic"\n'
        )
        _warm(folder / "disk-flat.vmdk")
        base = sim.url.rsplit("/sdk", 1)[0]
        query = f"?dcPath=DC0&dsName={ds_name}"
        descriptor_url = f"{base}/folder/bench-disk/disk.vmdk{query}"
        extent_url = f"{base}/folder/bench-disk/disk-flat.vmdk{query}"
        headers = work / "headers"
        headers.touch(mode=0o600)
        headers.write_text(f"Cookie: {cookie}\n")
        ours_out, peer_out = work / "http-ours.img", work / "http-curl.img"
        ours, peer = [], []
        env = _ours_env()
        for i in range(RUNS):
            order = ["ours", "peer"] if i % 2 == 0 else ["peer", "ours"]
            for step in order:
                _clean(ours_out, peer_out)
                if step == "ours":
                    cmd = [PY, "-m", "converters.disks", "--progress", "none", "--insecure"]
                    cmd += ["--header-file", str(headers), descriptor_url, str(ours_out)]
                    ours.append(_run(cmd, env=env)[0])
                    if i == 0:
                        subprocess.run(
                            [
                                "qemu-img",
                                "compare",
                                "-q",
                                "-f",
                                "raw",
                                "-F",
                                "raw",
                                str(folder / "disk-flat.vmdk"),
                                str(ours_out),
                            ],
                            check=True,
                        )
                else:
                    peer.append(
                        _run(["curl", "-k", "-s", "-f", "-H", f"@{headers}", "-o", str(peer_out), extent_url])[0]
                    )
        _clean(ours_out, peer_out)
        shutil.rmtree(folder)
        print(f"disks-http runs: ours={_fmt(ours)} curl={_fmt(peer)}")
        return statistics.median(ours), statistics.median(peer)
    finally:
        sim.stop()


def _fmt(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


def main() -> None:
    tmp = Path(tempfile.gettempdir())
    st = os.statvfs(tmp)
    free = st.f_bavail * st.f_frsize
    if free < 12 * GiB:
        raise SystemExit(f"bench-disks: needs 12 GiB free in {tmp}, {free // GiB} GiB available")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}, cores: {os.cpu_count()}")
    work = Path(tempfile.mkdtemp(prefix="bench-disks-", dir=tmp))
    try:
        local = bench_local(work)
        http = bench_http(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    ours, peer, cat, rss = local
    print(f"disks-local: ours/qemu-img={ours / peer:.2f}x cat-floor={cat:.2f}s peak-rss={rss // 1024}MiB")
    print(f"disks-http: curl-throughput/ours-throughput={http[0] / http[1]:.2f}x (1 GiB of 4 GiB written by ours)")
    print(f"BENCH disks-local ours={ours:.2f} peer={peer:.2f}")
    print(f"BENCH disks-http ours={http[0]:.2f} peer={http[1]:.2f}")


if __name__ == "__main__":
    main()
