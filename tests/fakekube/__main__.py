"""Run the fake API server in its own process:

    python -m tests.fakekube --kubeconfig /tmp/kubeconfig [--crd crds/vm.yaml ...] [--port 0]

Prints `fakekube: serving <url>` once ready, then serves until SIGTERM or SIGINT. A benchmark that runs its
controller in the same process as the server shares one core between them (the GIL); this gives each its own.
process.py drives it from tests."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from .server import FakeApiServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakekube", description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", type=Path, required=True, help="where to write the kubeconfig")
    parser.add_argument("--crd", type=Path, action="append", default=[], help="CRD YAML file (repeatable)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--scheduler", action="store_true", help="bind pending pods to Ready nodes")
    parser.add_argument("--provisioner", action="store_true", help="bind new PVCs to new volumes")
    parser.add_argument("--no-managed-fields", action="store_true", help="record only Apply managedFields")
    parser.add_argument("--bookmark-interval", type=float, default=5.0)
    args = parser.parse_args(argv)

    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    server = FakeApiServer(
        crds=list(args.crd),
        port=args.port,
        scheduler=args.scheduler,
        provisioner=args.provisioner,
        track_managed_fields=not args.no_managed_fields,
        bookmark_interval=args.bookmark_interval,
    )
    with server:
        server.kubeconfig(args.kubeconfig)
        print(f"fakekube: serving {server.url}", flush=True)
        done.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
