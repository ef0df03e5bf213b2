"""`python -m testbed.guestimage`: build the test guest (and optionally its VMDK) for demos and benchmarks."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from core.errors import MigratorError
from testbed.guestimage import DEFAULT_MARKER, build_guest, to_vmdk
from testbed.guestimage.vmdk import SUBFORMATS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.guestimage", description=__doc__)
    parser.add_argument("--output-dir", type=Path, default=None, help="where to write (default: the cache)")
    parser.add_argument("--firmware", choices=["bios", "efi"], default="bios")
    parser.add_argument("--behaviour", default="wait", help="wait | ignore-acpi | poweroff | crash | poweroff-after=N")
    parser.add_argument("--marker", default=DEFAULT_MARKER)
    parser.add_argument("--vmdk", choices=SUBFORMATS, default=None, help="also write a VMDK of this kind")
    args = parser.parse_args(argv)
    try:
        image = build_guest(args.output_dir, firmware=args.firmware, behaviour=args.behaviour, marker=args.marker)
        result: dict[str, object] = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(image).items()}
        if args.vmdk:
            result["vmdk"] = [str(path) for path in to_vmdk(image, image.raw.parent, args.vmdk)]
    except MigratorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
