"""``python -m runtime.handler --node NAME --sockets-dir DIR [--kubeconfig F]``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
from pathlib import Path
from typing import Any

from runtime.controller.kube import require_credentials
from runtime.handler.handler import Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runtime.handler", description="The runtime's node handler.")
    parser.add_argument("--node", default=os.environ.get("NODE_NAME"), help="this node's name (env NODE_NAME)")
    parser.add_argument("--sockets-dir", type=Path, default=Path("/var/run/migrator/sockets"))
    parser.add_argument("--kubeconfig")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between launcher polls")
    args = parser.parse_args(argv)
    if not args.node:
        parser.error("--node (or NODE_NAME) is required")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    require_credentials(args.kubeconfig)
    handler = Handler(args.node, args.sockets_dir, kubeconfig=args.kubeconfig, interval=args.interval)

    def stop(*_: Any) -> None:
        handler.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    handler.run()


if __name__ == "__main__":
    main()
