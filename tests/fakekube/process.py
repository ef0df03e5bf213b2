"""The fake API server in a child process (`python -m tests.fakekube`), with the same inspection helpers as
FakeApiServer, over its `/fakekube/*` endpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from .server import TOKEN, count_requests

PROJECT = Path(__file__).resolve().parents[2]


class FakeApiProcess:
    """Context manager: start() waits for the server's ready line; stop() terminates it."""

    def __init__(
        self,
        kubeconfig: Path,
        *,
        crds: list[Path] | None = None,
        scheduler: bool = False,
        provisioner: bool = False,
        track_managed_fields: bool = True,
    ) -> None:
        self.kubeconfig_path = Path(kubeconfig)
        self.args = ["--kubeconfig", str(self.kubeconfig_path)]
        for crd in crds or []:
            self.args += ["--crd", str(crd)]
        if scheduler:
            self.args.append("--scheduler")
        if provisioner:
            self.args.append("--provisioner")
        if not track_managed_fields:
            self.args.append("--no-managed-fields")
        self.url = ""
        self._process: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def __enter__(self) -> FakeApiProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> FakeApiProcess:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")]))}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.fakekube", *self.args],
            stdout=subprocess.PIPE,
            text=True,
            cwd=PROJECT,
            env=env,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line.startswith("fakekube: serving "):
            self.stop()
            raise RuntimeError(f"the fake API server did not start: {line!r}")
        self.url = line.split()[-1]
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def kubeconfig(self, path: Path | None = None) -> Path:
        """The kubeconfig the server wrote (admin token); copied to path when given."""
        if path is not None:
            Path(path).write_text(self.kubeconfig_path.read_text())
            return Path(path)
        return self.kubeconfig_path

    def _get(self, path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(self.url + path, method=method, headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def request_count(self, verb: str | None = None, resource: str | None = None) -> int:
        rows = self._get("/fakekube/counts")["counts"]
        counts = [((r["verb"], r["group"], r["resource"], r["subresource"]), r["count"]) for r in rows]
        return count_requests(counts, verb, resource)

    def objects(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"resource": resource, **({"namespace": namespace} if namespace else {})})
        return self._get(f"/fakekube/objects?{query}")["items"]

    def tally(self, resource: str, namespace: str, field: str, value: str | None = None) -> tuple[int, int]:
        """(objects of ``resource`` in ``namespace``, those whose dotted ``field`` equals ``value``, or is set and
        non-empty when ``value`` is None), counted by the server."""
        query = {"resource": resource, "namespace": namespace, "field": field, **({"value": value} if value else {})}
        answer = self._get(f"/fakekube/tally?{urllib.parse.urlencode(query)}")
        return int(answer["total"]), int(answer["matching"])

    def compact(self) -> None:
        self._get("/fakekube/compact", method="POST")
