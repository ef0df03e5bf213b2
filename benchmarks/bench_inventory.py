"""`make bench-inventory`: `migrator plan` on a 2,000-VM simulator vs a per-VM pyvmomi walk.

Ours: the real CLI in a subprocess (`migrator plan --source vsphere://... --insecure -o json`),
start to finish: process start, login, one paged PropertyCollector retrieval, translation,
planning rules, plan file. Peer: what a straightforward script does: log in, list the VMs
through a ContainerView, then read each property of each VM with one attribute access
(pyvmomi fetches every ``vm.config...``/``vm.runtime...`` access from the server). Both read
the same facts. Medians of ``--repeat`` runs; the last line is ``BENCH inventory ours=<s> peer=<s>``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

from migrator import simulator

MIGRATOR = Path(sys.executable).with_name("migrator")


def run_ours(sim: simulator.Simulator, workdir: Path) -> tuple[float, int]:
    env = {**os.environ, "MIGRATOR_VSPHERE_PASSWORD": sim.password}
    plan_file = workdir / "plan.yaml"
    command = [str(MIGRATOR), "plan", "--source", sim.source_url(), "--insecure", "-o", "json"]
    command += ["--output-file", str(plan_file)]
    started = time.perf_counter()
    result = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode not in (0, 3):  # 3: some VM blocked, still a complete plan
        raise SystemExit(f"migrator plan failed ({result.returncode}): {result.stderr.strip()}")
    return elapsed, plan_file.read_text().count("source_name:")


def read_vm_naively(vm: vim.VirtualMachine) -> dict[str, Any]:
    """One attribute access per fact, as a straightforward script would write it."""
    facts: dict[str, Any] = {
        "name": vm.name,
        "folder": vm.parent.name,
        "template": vm.config.template,
        "uuid": vm.config.uuid,
        "instance_uuid": vm.config.instanceUuid,
        "guest_id": vm.config.guestId,
        "guest_name": vm.config.guestFullName,
        "annotation": vm.config.annotation,
        "firmware": vm.config.firmware,
        "boot": vm.config.bootOptions,
        "cpus": vm.config.hardware.numCPU,
        "cores": vm.config.hardware.numCoresPerSocket,
        "memory": vm.config.hardware.memoryMB,
        "devices": vm.config.hardware.device,
        "cbt": vm.config.changeTrackingEnabled,
        "cpu_hot_add": vm.config.cpuHotAddEnabled,
        "memory_hot_add": vm.config.memoryHotAddEnabled,
        "cpu_affinity": vm.config.cpuAffinity,
        "ft": vm.config.ftInfo,
        "key_id": vm.config.keyId,
        "extra_config": vm.config.extraConfig,
        "vmx": vm.config.files.vmPathName,
        "power": vm.runtime.powerState,
        "host": vm.runtime.host.name,
        "consolidation": vm.runtime.consolidationNeeded,
        "tools": vm.guest.toolsStatus,
        "tools_running": vm.guest.toolsRunningStatus,
        "hostname": vm.guest.hostName,
        "ip": vm.guest.ipAddress,
        "guest_net": vm.guest.net,
        "snapshot": vm.rootSnapshot,  # vm.snapshot of a VM without snapshots crashes vcsim 0.24's handler
        "layout_files": vm.layoutEx.file,
        "layout_disks": vm.layoutEx.disk,
    }
    return facts


def run_peer(sim: simulator.Simulator) -> tuple[float, int]:
    started = time.perf_counter()
    si = SmartConnect(host=sim.host, port=sim.port, user=sim.username, pwd=sim.password, disableSslCertValidation=True)
    try:
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
        vms = [read_vm_naively(vm) for vm in view.view]
        view.DestroyView()
    finally:
        Disconnect(si)
    return time.perf_counter() - started, len(vms)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=2000, help="VMs in the simulator (two resource pools)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side (median)")
    args = parser.parse_args(argv)
    per_pool = max(args.vms // 2, 1)  # one cluster root pool + one standalone host: 2 pools
    print(f"starting vcsim with {per_pool * 2} VMs ...", flush=True)
    with simulator.start(vms_per_pool=per_pool, clusters=1, hosts_per_cluster=3, standalone_hosts=1) as sim:
        ours: list[float] = []
        peer: list[float] = []
        with tempfile.TemporaryDirectory() as tmp:
            for run in range(1, args.repeat + 1):
                seconds, planned = run_ours(sim, Path(tmp))
                ours.append(seconds)
                print(f"run {run}: migrator plan  {seconds:8.2f} s  ({planned} VMs planned)", flush=True)
                seconds, walked = run_peer(sim)
                peer.append(seconds)
                print(f"run {run}: per-VM walk    {seconds:8.2f} s  ({walked} VMs read)", flush=True)
    ours_median = statistics.median(ours)
    peer_median = statistics.median(peer)
    print(f"migrator plan (median of {len(ours)}): {ours_median:.2f} s")
    print(f"per-VM pyvmomi walk (median of {len(peer)}): {peer_median:.2f} s")
    print(f"ratio: {peer_median / ours_median:.1f}x faster")
    print(f"BENCH inventory ours={ours_median:.2f} peer={peer_median:.2f}")


if __name__ == "__main__":
    main()
