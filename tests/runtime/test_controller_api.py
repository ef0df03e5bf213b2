"""The controller's API client (``runtime.controller.api``), over real HTTP against the fake API server: JSON in
and out, the status codes the reconcilers act on (404, 409), a rotated token read again on 401, and no answer
at all as one error."""

from __future__ import annotations

import asyncio
import http.server
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import kopf
import pytest

from runtime.controller.api import Api, ApiError, core_path, ignore, list_uids, newer_exists, object_path
from runtime.controller.kube import connection_info
from runtime.deploy import crd_paths
from tests.fakekube import FakeApiServer

T = TypeVar("T")


def a_vm(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": "default", "labels": labels or {}},
        "spec": {"runStrategy": "Halted", "template": {"spec": {"domain": {"devices": {}}}}},
    }


def run(api: Api, calls: Callable[[], Awaitable[T]]) -> T:
    """``calls`` in a loop of their own; the session closes with it."""

    async def main() -> T:
        try:
            return await calls()
        finally:
            await api.close()

    return asyncio.run(main())


@pytest.fixture(scope="module")
def server() -> Any:
    with FakeApiServer(crds=crd_paths()) as api:
        yield api


def test_writes_answer_the_objects_and_a_stale_write_is_a_409(server: Any, tmp_path: Path) -> None:
    kubeconfig = str(server.kubeconfig(tmp_path / "kubeconfig"))
    api = Api(lambda: connection_info(kubeconfig))

    async def calls() -> dict[str, Any]:
        created = await api.create(object_path("virtualmachines", "default"), a_vm("w1", {"team": "a"}))
        assert created["metadata"]["uid"] and created["spec"]["runStrategy"] == "Halted"
        version = created["metadata"]["resourceVersion"]
        status_path = object_path("virtualmachines", "default", "w1", "status")
        patch = {"metadata": {"resourceVersion": version}, "status": {"printableStatus": "Stopped"}}
        patched = await api.merge_patch(status_path, patch)
        assert patched["status"]["printableStatus"] == "Stopped"
        # the same precondition again: the copy is stale now
        with pytest.raises(ApiError) as stale:
            await api.merge_patch(status_path, patch)
        assert stale.value.status == 409
        assert await newer_exists(api.merge_patch(status_path, patch)) is None
        # 404 where the reconcilers expect it, and other statuses through
        assert await ignore((404,), api.get(object_path("virtualmachines", "default", "nope"))) is None
        with pytest.raises(ApiError) as missing:
            await ignore((409,), api.get(object_path("virtualmachines", "default", "nope")))
        assert missing.value.status == 404 and "nope" in missing.value.reason
        # a delete whose uid precondition names another object is refused, and the object stays
        wrong_uid = {"preconditions": {"uid": "not-its-uid"}}
        path = object_path("virtualmachines", "default", "w1")
        assert await ignore((409,), api.delete(path, wrong_uid)) is None
        assert (await api.get(path))["metadata"]["uid"] == created["metadata"]["uid"]
        await api.create(object_path("virtualmachines", "default"), a_vm("w2", {"team": "b"}))
        selected = {
            vm["metadata"]["name"] for vm in await api.items(object_path("virtualmachines", "default"), "team=a")
        }
        assert selected == {"w1"}
        uids = await list_uids(api, "virtualmachines", None)
        deleted = await api.delete(path, {"preconditions": {"uid": created["metadata"]["uid"]}})
        after = await list_uids(api, "virtualmachines", "default")
        return {"uids": uids, "after": after, "deleted": deleted, "created": created}

    answers = run(api, calls)
    assert answers["created"]["metadata"]["uid"] in answers["uids"]
    assert answers["created"]["metadata"]["uid"] not in answers["after"] and len(answers["after"]) == 1


def test_a_pod_is_created_and_deleted_through_the_core_paths(server: Any, tmp_path: Path) -> None:
    kubeconfig = str(server.kubeconfig(tmp_path / "kubeconfig"))
    api = Api(lambda: connection_info(kubeconfig))
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p1", "labels": {"kubevirt.io": "virt-launcher"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }

    async def calls() -> tuple[set[str], set[str]]:
        created = await api.create(core_path("pods", "default"), pod)
        listed = await list_uids(api, "pods", "default", "kubevirt.io=virt-launcher")
        await api.delete(core_path("pods", "default", "p1"))
        assert await ignore((404,), api.delete(core_path("pods", "default", "p1"))) is None  # gone: a 404
        return {created["metadata"]["uid"]}, listed

    created, listed = run(api, calls)
    assert created <= listed


def test_a_refused_token_is_read_again_once_and_a_dead_one_is_one_error(server: Any, tmp_path: Path) -> None:
    good = connection_info(str(server.kubeconfig(tmp_path / "kubeconfig")))
    tokens = ["not-a-token", good.token]  # the first read gives a token since rotated

    def rotating() -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=good.server, token=tokens.pop(0) if len(tokens) > 1 else tokens[0])

    api = Api(rotating)
    listed = run(api, lambda: api.items(object_path("virtualmachines", "default")))
    assert isinstance(listed, list)

    reads = [kopf.ConnectionInfo(server=good.server, token="not-a-token")]

    def gone() -> kopf.ConnectionInfo:  # the second read fails: the kubeconfig was removed meanwhile
        if not reads:
            raise OSError("no such kubeconfig")
        return reads.pop()

    unreadable = Api(gone)
    with pytest.raises(ApiError) as refused:
        run(unreadable, lambda: unreadable.items(object_path("virtualmachines", "default")))
    assert refused.value.status == 401

    dead = Api(lambda: kopf.ConnectionInfo(server=good.server, token="not-a-token"))
    with pytest.raises(ApiError) as refused:
        run(dead, lambda: dead.items(object_path("virtualmachines", "default")))
    assert refused.value.status == 401


def test_no_answer_is_an_api_error_with_status_zero() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    api = Api(lambda: kopf.ConnectionInfo(server=f"http://127.0.0.1:{port}"))
    with pytest.raises(ApiError) as error:
        run(api, lambda: api.get(object_path("virtualmachines", "default", "x")))
    assert error.value.status == 0 and "GET /apis/kubevirt.io/v1" in str(error.value)


class DropsEverySecondRequest(http.server.BaseHTTPRequestHandler):
    """Keeps each connection open after its first answer, and closes it on the next request without answering
    (as a server does that restarts, or whose idle timeout ends just as the client reuses the connection)."""

    protocol_version = "HTTP/1.1"
    answered = 0
    dropped = 0

    def setup(self) -> None:  # an instance per connection
        super().setup()
        self.answered_here = False

    def do_PATCH(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        if self.answered_here:
            type(self).dropped += 1
            self.close_connection = True
            return
        body = json.dumps({"kind": "VirtualMachine", "metadata": {"name": "x"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.answered_here = True
        type(self).answered += 1

    def log_message(self, *_: Any) -> None:
        pass


def test_a_kept_connection_the_server_drops_is_replaced_and_the_call_made_again() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), DropsEverySecondRequest)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api = Api(lambda: kopf.ConnectionInfo(server=f"http://127.0.0.1:{server.server_address[1]}"))
    path = object_path("virtualmachines", "default", "x", "status")

    async def calls() -> list[dict[str, Any]]:
        return [await api.merge_patch(path, {"status": {}}) for _ in range(3)]

    try:
        answers = run(api, calls)
    finally:
        server.shutdown()
        server.server_close()
    assert [a["metadata"]["name"] for a in answers] == ["x", "x", "x"]
    assert DropsEverySecondRequest.answered == 3 and DropsEverySecondRequest.dropped == 2


@pytest.mark.parametrize("agent", [["runtime.controller"], ["runtime.handler", "--node", "n1"], ["runtime.migration"]])
def test_an_agent_without_credentials_exits_with_one_line(agent: list[str], tmp_path: Path) -> None:
    """kopf retries a failing login forever; the agents check their credentials first."""
    missing = tmp_path / "no-such-kubeconfig"
    done = subprocess.run(
        [sys.executable, "-m", *agent, "--kubeconfig", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"error: cannot read the API credentials from kubeconfig {missing}: "
        "Invalid kube-config file. No configuration found."
    ]
