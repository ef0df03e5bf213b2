"""``pods/exec``: the Kubernetes websocket exec protocol, served with aiohttp's websocket support.

As on a cluster, the API server only checks the request and streams; the node runs the command: a
node's "kubelet" registers a resolver (``FakeApiServer.serve_exec(node, resolver)``) that says how to run a
command in one of its pods — which local program, in which directory, with which environment (the test
kubelet maps the pod's volumes to its local directories). Without one for the pod's node the answer is
what an unreachable kubelet gives, an error before the upgrade.

The protocol (``v5.channel.k8s.io``, ``v4.channel.k8s.io``, ``channel.k8s.io``; the client's first one that
is served): each websocket message starts with its channel byte, 0 stdin (client → server), 1 stdout,
2 stderr, 3 the error channel, on which the server sends the command's outcome as a ``v1.Status`` (v4 and v5:
``Success``, or ``NonZeroExitCode`` with the exit code in ``details.causes``) before it closes; v5 adds channel
255, "close": ``255 0`` from the client closes the command's stdin. Resize (channel 4) is read and ignored (no TTY).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from .errors import StatusError, bad_request

log = logging.getLogger(__name__)

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
MAX_MESSAGE = 64 << 20  # the client writes stdin in pieces of a few MiB
_READ = 64 << 10


@dataclass(frozen=True)
class ExecTarget:
    """How the node runs a command in a pod: the local program and its arguments, directory and environment."""

    argv: list[str]
    cwd: str | None = None
    env: dict[str, str] | None = field(default=None, repr=False)


# (pod, container name, command) → how to run it; raises ValueError with the reason for a pod it cannot serve.
ExecResolver = Callable[[dict[str, Any], str, list[str]], ExecTarget]


def _flag(query: Any, name: str) -> bool:
    return str(query.get(name, "")).lower() in ("true", "1")


def check_request(pod: dict[str, Any], query: Any) -> tuple[str, list[str], bool]:
    """The container, the command and whether stdin is wanted, or the API server's 400 for a request it refuses."""
    name = pod["metadata"]["name"]
    command = list(query.getall("command", []))
    if not command:
        raise bad_request("you must specify at least one command for the container")
    if not any(_flag(query, f) for f in ("stdin", "stdout", "stderr")):
        raise bad_request("you must specify at least 1 of stdin, stdout, stderr")
    containers = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
    container = query.get("container") or ""
    if not container:
        if len(containers) != 1:
            raise bad_request(
                f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]"
            )
        container = containers[0]
    elif container not in containers:
        raise bad_request(f"container {container} is not valid for pod {name}")
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        raise bad_request(f"cannot exec into a container in a completed pod; current phase is {phase}")
    if not (pod.get("spec") or {}).get("nodeName"):
        raise bad_request(f"pod {name} does not have a host assigned")
    return container, command, _flag(query, "stdin")


def outcome(command: list[str], code: int) -> dict[str, Any]:
    """The ``v1.Status`` the error channel carries once the command exited with ``code``."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command {command}, exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


async def serve(
    request: web.Request, pod: dict[str, Any], resolver: ExecResolver | None, query: Any
) -> web.WebSocketResponse:
    container, command, wants_stdin = check_request(pod, query)
    node = pod["spec"]["nodeName"]
    if resolver is None:
        raise StatusError(500, "InternalError", f"error dialing backend: no kubelet serves exec on node {node}")
    try:
        target = resolver(pod, container, command)
    except ValueError as error:
        raise StatusError(500, "InternalError", f"error executing command in container: {error}") from None
    ws = web.WebSocketResponse(protocols=PROTOCOLS, max_msg_size=MAX_MESSAGE, autoping=True)
    if not ws.can_prepare(request).ok:
        raise bad_request("Upgrade request required")
    await ws.prepare(request)
    try:
        process = await asyncio.create_subprocess_exec(
            *target.argv,
            cwd=target.cwd,
            env=target.env,
            stdin=asyncio.subprocess.PIPE if wants_stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as error:
        failure = {
            "metadata": {},
            "status": "Failure",
            "message": f"error executing command in container: exec: {command[0]!r}: {error.strerror}",
            "reason": "InternalError",
        }
        await _send(ws, ERROR, json.dumps(failure).encode())
        await ws.close()
        return ws
    pumps = [
        asyncio.ensure_future(_pump(process.stdout, ws, STDOUT)),
        asyncio.ensure_future(_pump(process.stderr, ws, STDERR)),
    ]
    feeder = asyncio.ensure_future(_feed(ws, process, v5=ws.ws_protocol == PROTOCOLS[0]))
    try:
        await asyncio.gather(*pumps)
        code = await process.wait()
        await _send(ws, ERROR, json.dumps(outcome(command, code)).encode())
    except (ConnectionError, asyncio.CancelledError):  # the client went away: so does the command
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    finally:
        feeder.cancel()
        for pump in pumps:
            pump.cancel()
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        await ws.close()
    return ws


async def _send(ws: web.WebSocketResponse, channel: int, data: bytes) -> None:
    await ws.send_bytes(bytes([channel]) + data)


async def _pump(stream: asyncio.StreamReader | None, ws: web.WebSocketResponse, channel: int) -> None:
    assert stream is not None
    while chunk := await stream.read(_READ):
        await _send(ws, channel, chunk)


async def _feed(ws: web.WebSocketResponse, process: asyncio.subprocess.Process, *, v5: bool) -> None:
    """Client messages → the command's stdin, until the client closes stdin (v5) or the connection."""
    stdin = process.stdin
    async for message in ws:
        if message.type == WSMsgType.BINARY:
            data: bytes = message.data
        elif message.type == WSMsgType.TEXT:  # the client sends str data as text: chr(channel) + text
            data = message.data.encode()
        else:
            break
        if not data:
            continue
        channel, payload = data[0], data[1:]
        if channel == STDIN and stdin is not None and payload:
            try:
                stdin.write(payload)
                await stdin.drain()
            except (BrokenPipeError, ConnectionResetError):  # the command stopped reading (it exited)
                stdin = None
        elif channel == CLOSE and v5 and payload[:1] == bytes([STDIN]) and stdin is not None:
            stdin.close()
            stdin = None
    # The connection is gone: before the outcome was sent, the client hung up, and the command goes with it.
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
