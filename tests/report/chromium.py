"""Debian's chromium, headless, driven through the DevTools protocol (websocket-client).

Loads a page, and records what a person's browser would: console messages, uncaught
exceptions, every network request the page makes, and a screenshot.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websocket

from core.wait import wait_until

CHROMIUM = shutil.which("chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    "--window-size=1300,1600",
]


@dataclass
class PageVisit:
    console: list[dict[str, Any]] = field(default_factory=list)  # Runtime.consoleAPICalled / Log.entryAdded
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    failed: list[str] = field(default_factory=list)
    screenshot: bytes = b""
    values: dict[str, Any] = field(default_factory=dict)  # what the page's own DOM says

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [m for m in self.console if m.get("level") in ("error", "warning") or m.get("type") == "error"]


class DevTools:
    def __init__(self, socket_url: str) -> None:
        self.socket = websocket.create_connection(socket_url, timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self.events.append(message)

    def wait_for(self, method: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(method)
            self.socket.settimeout(max(0.1, deadline - time.monotonic()))
            self.events.append(json.loads(self.socket.recv()))

    def close(self) -> None:
        self.socket.close()


def visit(url: str, expressions: dict[str, str], settle: float = 1.0) -> PageVisit:
    """Open url in a fresh headless chromium; evaluate each JavaScript expression once loaded."""
    assert CHROMIUM, "chromium is not installed (scripts/install-deps.sh installs it)"
    profile = Path(tempfile.mkdtemp(prefix="migrator-chromium-"))
    process = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"

        def port_open() -> bool:
            if process.poll() is not None:
                raise RuntimeError("chromium did not open its DevTools port")
            return port_file.exists() and bool(port_file.read_text().strip())

        if not wait_until(port_open, timeout=60, interval=0.1):
            raise RuntimeError("chromium did not open its DevTools port")
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            pages = [t for t in json.load(answer) if t.get("type") == "page"]
        tools = DevTools(pages[0]["webSocketDebuggerUrl"])
        try:
            for domain in ("Page", "Runtime", "Log", "Network"):
                tools.call(f"{domain}.enable")
            tools.call("Page.navigate", url=url)
            tools.wait_for("Page.loadEventFired", timeout=60)
            time.sleep(settle)
            found = PageVisit()
            for name, expression in expressions.items():
                result = tools.call("Runtime.evaluate", expression=expression, returnByValue=True)
                found.values[name] = result.get("result", {}).get("value")
            shot = tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            found.screenshot = base64.b64decode(shot["data"])
            for event in tools.events:
                method, params = event.get("method"), event.get("params", {})
                if method == "Runtime.consoleAPICalled":
                    found.console.append({"type": params.get("type"), "args": params.get("args")})
                elif method == "Log.entryAdded":
                    found.console.append(params.get("entry", {}))
                elif method == "Runtime.exceptionThrown":
                    found.exceptions.append(params)
                elif method == "Network.requestWillBeSent":
                    found.requests.append(params["request"]["url"])
                elif method == "Network.loadingFailed":
                    found.failed.append(params.get("errorText", ""))
            return found
        finally:
            tools.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(profile, ignore_errors=True)
