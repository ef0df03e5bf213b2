"""``python -m runtime.launcher``: run one VM instance (see docs/architecture.md, Launcher)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from core.errors import MigratorError
from runtime.launcher.contract import Exit
from runtime.launcher.launcher import Launcher, LauncherConfig
from runtime.launcher.vmi import load_instance


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m runtime.launcher", description="Run one VM instance.")
    parser.add_argument("--vmi", type=Path, help="VirtualMachineInstance or VirtualMachine YAML/JSON")
    parser.add_argument("--disk-root", type=Path, default=Path("/var/run/kubevirt-private/vmi-disks"))
    parser.add_argument("--state-dir", type=Path, default=Path("/var/run/migrator-launcher"))
    parser.add_argument("--libvirt-uri", default=None, help="default: qemu:///system, started when not running")
    parser.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto")
    parser.add_argument("--name", default=None, help="domain name (default: the instance's name)")
    parser.add_argument(
        "--no-port-forwards",
        dest="forward_ports",
        action="store_false",
        help="do not forward the pod-network ports the spec lists to the host",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="launcher: %(message)s",
        stream=sys.stderr,
    )
    try:
        instance = load_instance(args.vmi)
    except MigratorError as error:
        logging.getLogger("runtime.launcher").error("%s", error.message)
        return Exit.FAILED_TO_START
    config = LauncherConfig(
        instance=instance,
        disk_root=args.disk_root,
        state_dir=args.state_dir.resolve(),
        libvirt_uri=args.libvirt_uri,
        accel=args.accel,
        name=args.name,
        forward_ports=args.forward_ports,
    )
    return Launcher(config).run()


if __name__ == "__main__":
    sys.exit(main())
