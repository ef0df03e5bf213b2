"""`python -m testbed.debian_guest [--vmx-dir DIR]`: build (or find) the cached guest; print its paths."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.errors import MigratorError
from testbed.debian_guest import build_debian_guest, write_vmx


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.debian_guest")
    parser.add_argument("--vmx-dir", type=Path, help="Also write DIR/guest.vmx with a copy of the disk.")
    parser.add_argument("--name", default="debian12-vmware", help="The VM's displayName in the .vmx.")
    args = parser.parse_args()
    try:
        guest = build_debian_guest()
        print(f"raw  {guest.raw}")
        print(f"vmdk {guest.vmdk}")
        if args.vmx_dir:
            print(f"vmx  {write_vmx(guest, args.vmx_dir, args.name)}")
    except MigratorError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
