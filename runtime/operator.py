"""What the runtime's kopf agents (the VM controller, the Migration controller) share: their flags and loop."""

from __future__ import annotations

import argparse
import asyncio
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
    loop (a worker task, queue and timeouts per object, the write threads' wake-ups), and uvloop's is cheaper
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
