"""pytest fixtures for Himalia and its plugin authors (registered as a pytest11 plugin).

    async def test_hello(himalia_server):
        async with himalia_server(plugins={"hello": my_plugin}, config={...}) as server:
            r = await server.get("/api/hello")
            assert r.status == 200

`himalia_server(...)` builds a real app with the installed plugins (plus `plugins`, minus `disable`),
serves it on 127.0.0.1 on a free port, and yields a `RunningServer` whose client sends the token.
Async tests need an async test runner (pytest-asyncio, `asyncio_mode = "auto"`).
`serve_process(...)` runs a real `himalia serve --port 0` subprocess instead, for command-line and
config-file tests.

Conformance kits (`ContentsKit`, `SessionStoreKit`, `IdentityKit`, `KernelsKit`, from `himalia.kits`): test classes
a provider's tests subclass to prove the provider honours its Protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from . import app as app_module
from .urls import url_path
from .config import read_config
from .keys import CONFIG, SERVICES
from .serve import start

DEFAULT_TIMEOUT = 60.0

_KITS = {"ContentsKit": "contents", "IdentityKit": "identity", "KernelsKit": "kernels", "SessionStoreKit": "session_store",
         "write_tree": "contents"}


def __getattr__(name: str) -> Any:
    """`from himalia.testing import ContentsKit`: the kits (in `himalia.kits`) are imported when asked for,
    so a test run that uses none never loads them."""
    if name in _KITS:
        import importlib

        return getattr(importlib.import_module(f"himalia.kits.{_KITS[name]}"), name)
    raise AttributeError(f"module 'himalia.testing' has no attribute {name!r}")


@dataclass
class RunningServer:
    """A Himalia app served on loopback, with an authenticated client."""

    app: web.Application
    url: str
    """Base URL, ending in the base_url path ("http://127.0.0.1:PORT/")."""
    token: str | None
    client: aiohttp.ClientSession
    root_dir: Path

    def url_for(self, path: str) -> str:
        return self.url.rstrip("/") + "/" + path.lstrip("/")

    def ws_url(self, path: str) -> str:
        return "ws" + self.url_for(path)[4:]

    async def request(self, method: str, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        """An authenticated request; the body is read before returning, so `.json()` needs no await guard."""
        timeout = kwargs.pop("timeout", DEFAULT_TIMEOUT)

        async def go() -> aiohttp.ClientResponse:
            resp = await self.client.request(method, self.url_for(path), **kwargs)
            await resp.read()
            return resp

        return await asyncio.wait_for(go(), timeout)

    async def get(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.request("PUT", path, **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.request("PATCH", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.request("DELETE", path, **kwargs)

    def ws_connect(self, path: str, **kwargs: Any) -> Any:
        """An authenticated websocket connection (use as `async with server.ws_connect(...) as ws`)."""
        return self.client.ws_connect(self.url_for(path), **kwargs)

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"} if self.token else {}


@asynccontextmanager
async def serve_app(
    *,
    root_dir: str | Path,
    config: dict[str, Any] | None = None,
    plugins: dict[str, Any] | None = None,
    entry_points: bool = True,
    disable: list[str] | tuple[str, ...] = (),
    config_path: str | Path | None = None,
) -> AsyncIterator[RunningServer]:
    """Build and serve an app on 127.0.0.1:<free port>; stop it (and its kernels) on exit.

    With `config_path`, the TOML file is read (relative paths resolve against it) and `config` is laid
    over it key by key; a path to no file only anchors relative paths in `config`. `root_dir` is
    served unless the file or `config` names another.
    """
    data: dict[str, Any] = {}
    if config_path and Path(config_path).is_file():
        data = read_config(str(config_path)).data
    _merge(data, config or {})
    server_table = data.setdefault("server", {})
    own_root = isinstance(server_table, dict) and "root_dir" in server_table
    if isinstance(server_table, dict) and not own_root:  # anything else: validation names the file
        server_table["root_dir"] = str(root_dir)
    app = app_module.build_app(str(config_path) if config_path else None, config_data=data, disable=disable,
                               entry_points=entry_points, extra_plugins=plugins)  # as `himalia serve` builds it
    cfg = app[CONFIG]
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    await start(runner)
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}{url_path(cfg.server.base_url, '/')}"
        identity = app[SERVICES].identity
        token = getattr(identity, "token", None)
        headers = {"Authorization": f"token {token}"} if token else {}
        async with aiohttp.ClientSession(headers=headers) as client:
            yield RunningServer(app=app, url=url, token=token, client=client,
                                root_dir=Path(cfg.server.root_dir) if own_root else Path(root_dir))
    finally:
        await runner.cleanup()


def _merge(into: dict[str, Any], over: dict[str, Any]) -> None:
    """Lay `over` onto `into`, table by table (a key in `over` replaces a non-table value)."""
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


ServerFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]


@pytest.fixture
def himalia_server(tmp_path: Path) -> ServerFactory:
    """A factory: `async with himalia_server(config=..., plugins=...) as server:`.

    The root dir defaults to a fresh `tmp_path / "root"`; pass `root_dir=` to choose another.
    """
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)

    def factory(**kwargs: Any) -> AbstractAsyncContextManager[RunningServer]:
        kwargs.setdefault("root_dir", root)
        return serve_app(**kwargs)

    return factory


# --- a real `himalia serve` process -------------------------------------------------------------


@dataclass
class ServerProcess:
    """A `himalia serve` subprocess that has printed its URL; `output` holds its stdout lines so far."""

    process: Any
    url: str
    """Base URL, ending in "/" (the token query string removed)."""
    token: str | None
    output: list[str]

    def url_for(self, path: str) -> str:
        return self.url.rstrip("/") + "/" + path.lstrip("/")

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"} if self.token else {}


def stop_process(process: Any, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Stop a subprocess: SIGTERM, then SIGKILL if it has not exited within `timeout`; reaped either way."""
    import subprocess

    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


@contextmanager
def serve_process(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    python: str | Path | None = None,
) -> Iterator[ServerProcess]:
    """Run `himalia serve --port 0 ARGS...` with this Python (or the interpreter `python`, say a
    plugin's own virtualenv); yield once it prints its URL.

    Stopped with SIGTERM on exit (killed if it has not exited within `timeout`). `env` replaces the
    environment (use `{**os.environ, ...}` to extend it). Raises RuntimeError with the process's
    output if it exits or stays silent for `timeout` seconds before announcing its URL.
    """
    import queue
    import re
    import subprocess
    import sys
    import threading
    import time

    cmd = [str(python or sys.executable), "-m", "himalia.cli", "serve", "--port", "0", *args]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                               cwd=cwd, bufsize=1)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:  # a thread, so every wait on the output can have a deadline
        for line in process.stdout:  # type: ignore[union-attr]
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    output: list[str] = []
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"himalia serve printed no URL within {timeout}s:\n" + "\n".join(output)) from None
            if line is None:
                process.wait(timeout)
                raise RuntimeError(f"himalia serve exited with status {process.returncode}:\n" + "\n".join(output))
            output.append(line)
            found = re.match(r"^\s+(http://\S+?)(?:\?token=(\S+))?$", line)
            if found:
                break
        server = ServerProcess(process, found.group(1), found.group(2), output)

        def collect() -> None:  # keep draining, so a chatty server never blocks on a full pipe
            while (more := lines.get()) is not None:
                output.append(more)

        threading.Thread(target=collect, daemon=True).start()
        yield server
    finally:
        stop_process(process, timeout)


def write_keep_config(tmp_path: Path, token: str, *, persist: bool = True, extra: str = "",
                      port: int | None = None) -> Path:
    """`tmp_path/himalia.toml` for a real `himalia serve` whose state outlives it: root dir, state dir and
    session database under `tmp_path`, a fixed token (so clients can reconnect after a restart), and
    `[plugins.kernels] persist`; `extra` is appended TOML (more tables). With `port`, the server listens
    on exactly that port (no retries: clients reconnect to it). Creates the root dir."""
    config = tmp_path / "himalia.toml"
    listen = f"port = {port}\nport_retries = 0\n" if port is not None else ""
    config.write_text(f"""
[server]
{listen}root_dir = "{tmp_path / 'root'}"
state_dir = "{tmp_path / 'state'}"
[plugins.auth]
token = "{token}"
[plugins.sessions]
database = "{tmp_path / 'sessions.db'}"
[plugins.kernels]
persist = {'true' if persist else 'false'}
{extra}""")
    (tmp_path / "root").mkdir(exist_ok=True)
    return config


class ApiClient:
    """An HTTP client of a server at `url` with `token`: `call` answers (status, JSON body or None),
    each call bounded by `timeout`. `http` is the aiohttp session (base_url set); `close()` it."""

    def __init__(self, url: str, token: str, timeout: float = DEFAULT_TIMEOUT):
        self.http = aiohttp.ClientSession(base_url=url, headers={"Authorization": f"token {token}"})
        self.timeout = timeout

    async def call(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        import json

        async with asyncio.timeout(self.timeout):
            async with self.http.request(method, path, **kw) as r:
                body = await r.read()
                return r.status, json.loads(body) if body else None

    async def close(self) -> None:
        await self.http.close()
