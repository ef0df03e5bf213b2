"""What the runtime's kopf agents (the VM controller, the Migration controller) share: their flags and loop."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import logging
import logging.handlers
import queue
from typing import Any

import kopf
import uvloop


def agent_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--kubeconfig", help="default: in-cluster service account, else $KUBECONFIG")
    parser.add_argument("--namespace", help="watch one namespace (default: all)")
    return parser


def run_operator(
    registry: kopf.OperatorRegistry, namespace: str | None, *, stop_flag: Any = None, ready_flag: Any = None
) -> None:
    """Run kopf's operator loop on ``registry``, cluster-wide or in one namespace, until ``stop_flag``.

    On uvloop, as ``kopf run`` does when it is installed: kopf spends most of its CPU per watch event in the event
    loop (a worker task, queue and timeouts per object, the API calls' sockets), and uvloop's is cheaper
    than asyncio's own (the controller's CPU in bench-controller: -6 %).
    """
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(
            kopf.operator(
                registry=registry,
                clusterwide=namespace is None,
                namespaces=[namespace] if namespace else [],
                standalone=True,
                stop_flag=stop_flag,
                ready_flag=ready_flag,
            )
        )


def configure_logging(level: int) -> None:
    """Log lines go through a queue to one thread that writes them (the standard library's QueueHandler and
    QueueListener). Threads that log (kopf runs the synchronous handlers in a pool) never queue up on a stream
    handler's lock while another holds it waiting for the GIL; and the event loop never waits on a slow pipe.
    In bench-controller, where everything logs from the loop, writing directly was not cheaper (3.6-3.7 CPU-s
    against 3.4-3.5)."""
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    writer = logging.StreamHandler()
    writer.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    listener = logging.handlers.QueueListener(records, writer, respect_handler_level=True)
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(records)]
    root.setLevel(level)
    listener.start()
    atexit.register(listener.stop)  # what is queued is written before the process ends
