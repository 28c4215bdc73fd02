"""The other direction: a real jupyter_server uses Himalia as its gateway (`--gateway-url`), as its
users would point it at Kernel Gateway; code runs through jupyter_server's REST and websocket."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import aiohttp
from gateway_kit import WAIT, free_port, stop_process, ws_execute

HIMALIA_TOKEN = "himalia-token-for-jupyter-server"
JUPYTER_TOKEN = "jupyter-server-own-token"
EXTENSIONS = ("jupyterlab", "jupyter_lsp", "jupyter_server_terminals", "notebook_shim", "nbclassic", "notebook")
"""Server extensions that may be installed in the venv; off, so the server starts quickly."""


async def test_jupyter_server_runs_kernels_through_himalia(himalia_server, tmp_path):
    async with himalia_server(config={"plugins": {"auth": {"token": HIMALIA_TOKEN}}}) as himalia:
        await jupyter_server_runs_kernels_through(himalia, tmp_path)


async def jupyter_server_runs_kernels_through(himalia, tmp_path) -> None:
    """A real jupyter_server with `--gateway-url` at `himalia` (token HIMALIA_TOKEN) lists kernelspecs,
    starts a kernel, runs code on its websocket and deletes it; the kernel is Himalia's throughout
    (whichever kernel provider Himalia has: local, or a gateway of its own)."""
    port = free_port()
    base = tmp_path / "js"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(base / "runtime"), "JUPYTER_DATA_DIR": str(base / "data"),
           "JUPYTER_CONFIG_DIR": str(base / "config"), "JUPYTER_PLATFORM_DIRS": "1"}
    env.pop("JUPYTER_TOKEN", None)
    log = tmp_path / "jupyter_server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
             "--ServerApp.port_retries=0", "--ServerApp.open_browser=False",
             f"--IdentityProvider.token={JUPYTER_TOKEN}", f"--ServerApp.root_dir={tmp_path}",
             f"--gateway-url={himalia.url.rstrip('/')}", f"--GatewayClient.auth_token={HIMALIA_TOKEN}",
             "--GatewayClient.request_timeout=60", "--allow-root",
             *[f"--ServerApp.jpserver_extensions={name}=False" for name in EXTENSIONS]],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"token {JUPYTER_TOKEN}"}
    try:
        async with aiohttp.ClientSession(headers=headers) as js:
            deadline = time.monotonic() + 60
            while True:  # bounded readiness poll; asynchronous, for Himalia serves from this loop
                assert process.poll() is None, log.read_text()
                try:
                    async with js.get(f"{url}/api", timeout=aiohttp.ClientTimeout(total=2)) as r:
                        if r.status == 200:
                            break
                except (aiohttp.ClientError, asyncio.TimeoutError):  # not listening yet, or slow to answer
                    pass
                assert time.monotonic() < deadline, f"jupyter_server did not start:\n{log.read_text()}"
                await asyncio.sleep(0.1)

            async with asyncio.timeout(WAIT):
                async with js.get(f"{url}/api/kernelspecs") as r:
                    assert r.status == 200, await r.text()
                    assert "python3" in (await r.json())["kernelspecs"]
                async with js.post(f"{url}/api/kernels", json={"name": "python3"}) as r:
                    assert r.status == 201, await r.text()
                    kid = (await r.json())["id"]
            # the kernel is Himalia's: jupyter_server only relays
            assert [k["id"] for k in await (await himalia.get("/api/kernels")).json()] == [kid]
            async with js.ws_connect(f"ws://127.0.0.1:{port}/api/kernels/{kid}/channels?session_id=abc") as ws:
                out, reply = await ws_execute(ws, "print('through', 'jupyter_server')", session="abc")
                assert reply["status"] == "ok" and out == "through jupyter_server\n"
            async with asyncio.timeout(WAIT):
                async with js.delete(f"{url}/api/kernels/{kid}") as r:
                    assert r.status == 204, await r.text()
            assert await (await himalia.get("/api/kernels")).json() == []
    finally:
        await asyncio.to_thread(stop_process, process)
        if process.returncode not in (0, -15):
            print(log.read_text())
