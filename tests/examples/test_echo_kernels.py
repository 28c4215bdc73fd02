"""tests/examples/echo_kernels: a third party's kernel provider, with no relay code of its own.

The example implements the provider contract only (`KernelManager`, `KernelChannels`). Packaged as
its own distribution and pip-installed (--target), chosen with `[server] kernel_provider = "echo"`,
its kernels get the kernels plugin's REST routes, the websocket relay in both protocols, reconnect
buffers, live models, culling and the started/stopped events.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from himalia import SERVICES, KernelManager, hookimpl, wire
from himalia.testing import serve_process

TIMEOUT = 120
WAIT = 30.0
EXAMPLE = Path(__file__).resolve().parent / "echo_kernels"
ECHO = {"server": {"kernel_provider": "echo"}}


def test_example_imports_only_the_public_api():
    for path in (EXAMPLE / "himalia_echo").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.startswith("himalia"):
                assert node.module == "himalia", f"{path.name} imports {node.module}"


# --- a small client speaking either protocol, through himalia.wire --------------------------------


def request(channel: str, msg_type: str, content: dict[str, Any], session: str) -> Any:
    return wire.message(channel, msg_type, content, session=session)


async def send(ws: aiohttp.ClientWebSocketResponse, msg: Any, protocol: str) -> None:
    frame, binary = wire.encode(msg, protocol)
    await (ws.send_bytes(frame) if binary else ws.send_str(frame.decode()))


async def receive(ws: aiohttp.ClientWebSocketResponse, protocol: str) -> Any:
    frame = await asyncio.wait_for(ws.receive(), WAIT)
    assert frame.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT), frame
    if protocol == wire.V1:
        assert frame.type == aiohttp.WSMsgType.BINARY
    return wire.decode(frame.data, protocol)


async def execute(ws: aiohttp.ClientWebSocketResponse, code: str, protocol: str, session: str) -> tuple[str, dict]:
    """stdout and the reply of one execute_request, once its idle status arrived."""
    msg = request("shell", "execute_request", {"code": code, "silent": False}, session)
    await send(ws, msg, protocol)
    msg_id = msg.header_dict["msg_id"]
    out, reply, idle = "", None, False
    while reply is None or not idle:
        got = await receive(ws, protocol)
        if json.loads(got.parent_header).get("msg_id") != msg_id:
            continue
        content = json.loads(got.content)
        if got.msg_type == "stream":
            out += content["text"]
        elif got.msg_type == "execute_reply":
            reply = content
        elif got.msg_type == "status" and content["execution_state"] == "idle":
            idle = True
    return out, reply


# --- in process: buffering, culling, events --------------------------------------------------------


@pytest.fixture
def echo_plugin(monkeypatch: pytest.MonkeyPatch):
    """The example's import package from its source directory (no dist-info there, so no entry point)."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    for name in ("himalia_echo", "himalia_echo.kernels"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return importlib.import_module("himalia_echo")


class Observer:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, Any]] = []
        self.changed = asyncio.Event()

    @hookimpl
    def himalia_kernel_started(self, kernel_id, name, app):
        self.events.append(("started", kernel_id, name, app))
        self.changed.set()

    @hookimpl
    def himalia_kernel_stopped(self, kernel_id, reason, app):
        self.events.append(("stopped", kernel_id, reason, app))
        self.changed.set()

    async def until(self, condition) -> None:
        async with asyncio.timeout(WAIT):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


async def test_the_provider_is_the_kernel_service_underneath(himalia_server, echo_plugin):
    async with himalia_server(plugins={"echo": echo_plugin}, config=ECHO) as server:
        provider = server.app[SERVICES].kernel_provider
        assert type(provider).__name__ == "EchoKernels" and isinstance(provider, KernelManager)
        assert server.app[SERVICES].kernels is not provider  # served by the kernels plugin's service


@pytest.mark.parametrize("protocol", [wire.V1, wire.LEGACY])
async def test_routes_relay_and_reconnect_buffers(himalia_server, echo_plugin, protocol):
    observer = Observer()
    async with himalia_server(plugins={"echo": echo_plugin, "observer": observer}, config=ECHO) as server:
        r = await server.get("/api/kernelspecs")
        assert (await r.json())["default"] == "echo"
        r = await server.post("/api/kernels", json={})
        assert r.status == 201, await r.text()
        kid = (await r.json())["id"]
        assert observer.events == [("started", kid, "echo", server.app)]
        kwargs = {"protocols": (wire.V1,)} if protocol == wire.V1 else {}
        async with server.ws_connect(f"/api/kernels/{kid}/channels?session_id=s1", **kwargs) as ws:
            assert (ws.protocol or wire.LEGACY) == protocol
            assert await execute(ws, "hello", protocol, "s1") == ("hello\n", {
                "status": "ok", "execution_count": 1, "user_expressions": {}, "payload": []})
            model = await (await server.get(f"/api/kernels/{kid}")).json()
            assert (model["connections"], model["execution_state"]) == (1, "idle")
        # s1 is away: what the kernel publishes meanwhile is kept for it
        async with server.ws_connect(f"/api/kernels/{kid}/channels?session_id=s2", **kwargs) as other:
            assert (await execute(other, "while you were out", protocol, "s2"))[0] == "while you were out\n"
        async with server.ws_connect(f"/api/kernels/{kid}/channels?session_id=s1", **kwargs) as ws:
            replayed = ""
            while "while you were out" not in replayed:
                got = await receive(ws, protocol)
                if got.msg_type == "stream":
                    replayed += json.loads(got.content)["text"]
        assert (await server.delete(f"/api/kernels/{kid}")).status == 204
        assert observer.events[-1] == ("stopped", kid, "deleted", server.app)


async def test_idle_kernels_are_culled_with_an_event(himalia_server, echo_plugin):
    observer = Observer()
    config = {**ECHO, "plugins": {"kernels": {"cull_idle_timeout": 0.2, "cull_interval": 0.1}}}
    async with himalia_server(plugins={"echo": echo_plugin, "observer": observer}, config=config) as server:
        kid = (await (await server.post("/api/kernels", json={})).json())["id"]
        await observer.until(lambda: ("stopped", kid, "culled", server.app) in observer.events)
        assert (await server.get(f"/api/kernels/{kid}")).status == 404


# --- installed: through its entry point, in a real `himalia serve` --------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example distribution, pip-installed into a directory of its own."""
    build = tmp_path_factory.mktemp("build") / "echo_kernels"
    shutil.copytree(EXAMPLE, build, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    target = tmp_path_factory.mktemp("site")
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                             "--disable-pip-version-check", "-q", "--target", str(target), str(build)],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return target


@pytest.mark.parametrize("protocol", [wire.V1, wire.LEGACY])
async def test_installed_provider_serves_kernels_over_both_protocols(site: Path, tmp_path: Path, protocol):
    env = {**os.environ, "PYTHONPATH": str(site)}
    with serve_process("--root-dir", str(tmp_path), "--set", 'server.kernel_provider="echo"', env=env) as server:
        async with aiohttp.ClientSession(headers=server.auth_headers) as client:
            async with client.post(server.url_for("/api/kernels"), json={}) as r:
                assert r.status == 201, await r.text()
                kid = (await r.json())["id"]
            kwargs = {"protocols": (wire.V1,)} if protocol == wire.V1 else {}
            ws_url = server.url_for(f"/api/kernels/{kid}/channels")
            async with client.ws_connect(ws_url, **kwargs) as ws:
                assert (await execute(ws, "print me", protocol, "c"))[0] == "print me\n"
            async with client.get(server.url_for("/api/kernels")) as r:
                assert [k["id"] for k in await r.json()] == [kid]
    assert server.process.returncode == 0
