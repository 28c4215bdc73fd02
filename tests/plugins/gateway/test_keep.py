"""The gateway provider's records and keep mode, with real `himalia serve` processes in front of a real
Kernel Gateway: in keep mode a kernel on the gateway is found again after the server restarts (SIGTERM
or SIGKILL), with its session and its state; one the gateway lost meanwhile is forgotten with its
session; without keep mode a killed server's kernels are shut down on the gateway at the next start.

Every test ends the kernels it made; `kernels_left` fails a test that leaves one on the gateway."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from gateway_kit import TOKEN as GATEWAY_TOKEN
from gateway_kit import V1, WAIT, free_port, ws_execute

from himalia.testing import ApiClient, serve_process, write_keep_config

pytestmark = [pytest.mark.usefixtures("kernels_left"), pytest.mark.timeout(240)]

TOKEN = "gateway-keep-test-token"


class Server(ApiClient):
    def __init__(self, proc: Any):
        super().__init__(proc.url, TOKEN, WAIT)
        self.proc = proc

    @asynccontextmanager
    async def ws(self, kernel_id: str) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
        ws = await asyncio.wait_for(self.http.ws_connect(f"api/kernels/{kernel_id}/channels", protocols=(V1,)),
                                    WAIT)
        try:
            yield ws
        finally:
            await asyncio.wait_for(ws.close(), 10)


def write_config(tmp_path: Path, gateway_url: str, *, persist: bool) -> Path:
    return write_keep_config(tmp_path, TOKEN, persist=persist,
                             extra=f'[plugins.gateway]\nurl = "{gateway_url}"\nauth_token = "{GATEWAY_TOKEN}"\n')


@asynccontextmanager
async def server(config: Path, tmp_path: Path) -> AsyncIterator[Server]:
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    env.pop("JUPYTER_TOKEN", None)
    env.pop("JUPYTER_GATEWAY_URL", None)
    with serve_process("--config", str(config), env=env, timeout=WAIT) as proc:
        s = Server(proc)
        try:
            yield s
        finally:
            await s.close()


def end(s: Server, sig: int) -> None:
    s.proc.process.send_signal(sig)
    s.proc.process.wait(WAIT)


def record_path(tmp_path: Path, kernel_id: str) -> Path:
    return tmp_path / "state" / "gateway-kernels" / f"{kernel_id}.json"


async def new_session(s: Server) -> tuple[str, str]:
    status, model = await s.call("POST", "api/sessions", json={
        "path": "a.ipynb", "type": "notebook", "name": "a.ipynb", "kernel": {"name": "python3"}})
    assert status == 201, (model, s.proc.output[-20:])
    return model["id"], model["kernel"]["id"]


async def on_gateway(gateway: Any) -> list[str]:
    status, kernels = await gateway.aapi("GET", "/api/kernels")
    assert status == 200, kernels
    return [k["id"] for k in kernels]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_a_kept_gateway_kernel_is_found_again_after_a_restart(gateway, tmp_path, sig):
    config = write_config(tmp_path, gateway.url, persist=True)
    async with server(config, tmp_path) as s:
        session_id, kernel_id = await new_session(s)
        record = json.loads(record_path(tmp_path, kernel_id).read_text())
        assert record["url"] == gateway.url and record["keep"] is True and record["name"] == "python3"
        assert record_path(tmp_path, kernel_id).stat().st_mode & 0o777 == 0o600
        async with s.ws(kernel_id) as ws:
            _, reply = await ws_execute(ws, "x = 41")
            assert reply["status"] == "ok"
            end(s, sig)
            if sig == signal.SIGTERM:  # a service restart: the client is told to come back
                async with asyncio.timeout(WAIT):
                    while (await ws.receive()).type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                        pass
                assert ws.close_code == 1012
    assert kernel_id in await on_gateway(gateway), "the kept kernel was shut down with the server"
    assert record_path(tmp_path, kernel_id).exists()

    async with server(config, tmp_path) as s:
        status, sessions = await s.call("GET", "api/sessions")
        assert status == 200
        assert [(m["id"], m["kernel"]["id"]) for m in sessions] == [(session_id, kernel_id)]
        status, kernels = await s.call("GET", "api/kernels")
        assert status == 200 and [k["id"] for k in kernels] == [kernel_id]
        async with s.ws(kernel_id) as ws:
            out, reply = await ws_execute(ws, "print(x + 1)")
            assert reply["status"] == "ok" and out == "42\n"
        status, _ = await s.call("DELETE", f"api/sessions/{session_id}")
        assert status == 204
        assert kernel_id not in await on_gateway(gateway)
        assert not record_path(tmp_path, kernel_id).exists()


async def test_a_kept_kernel_the_gateway_lost_is_forgotten_with_its_session(gateway, tmp_path):
    config = write_config(tmp_path, gateway.url, persist=True)
    async with server(config, tmp_path) as s:
        _, kernel_id = await new_session(s)
    status, _ = await gateway.aapi("DELETE", f"/api/kernels/{kernel_id}")  # lost while the server was down
    assert status == 204

    async with server(config, tmp_path) as s:
        assert await s.call("GET", "api/sessions") == (200, [])
        status, _ = await s.call("GET", f"api/kernels/{kernel_id}")
        assert status == 404
        assert not record_path(tmp_path, kernel_id).exists()
        assert any("gone from the gateway" in line for line in s.proc.output), s.proc.output[-20:]


async def test_without_keep_mode_a_killed_servers_gateway_kernels_are_shut_down_at_the_next_start(gateway, tmp_path):
    config = write_config(tmp_path, gateway.url, persist=False)
    async with server(config, tmp_path) as s:
        _, kernel_id = await new_session(s)
        assert json.loads(record_path(tmp_path, kernel_id).read_text())["keep"] is False
        end(s, signal.SIGKILL)  # no shutdown: the kernel stays on the gateway
    assert kernel_id in await on_gateway(gateway)

    async with server(config, tmp_path) as s:
        assert kernel_id not in await on_gateway(gateway)
        assert not record_path(tmp_path, kernel_id).exists()
        assert await s.call("GET", "api/sessions") == (200, [])


async def test_without_keep_mode_gateway_kernels_stop_with_the_server(gateway, tmp_path):
    config = write_config(tmp_path, gateway.url, persist=False)
    async with server(config, tmp_path) as s:
        _, kernel_id = await new_session(s)
        end(s, signal.SIGTERM)
    assert kernel_id not in await on_gateway(gateway)
    assert not record_path(tmp_path, kernel_id).exists()


async def test_a_second_server_on_the_same_state_dir_refuses_in_keep_mode(gateway, tmp_path):
    config = write_config(tmp_path, gateway.url, persist=True)
    async with server(config, tmp_path):
        with pytest.raises(RuntimeError, match="is in use by another server"):
            async with server(config, tmp_path):
                pass


async def test_records_of_another_gateway_are_left_alone(gateway, tmp_path):
    config = write_config(tmp_path, gateway.url, persist=True)
    other = record_path(tmp_path, "0c8a47b4-0000-4000-8000-000000000000")
    other.parent.mkdir(parents=True)
    other.write_text(json.dumps({"id": other.stem, "name": "python3", "url": "http://127.0.0.1:9", "keep": True}))
    async with server(config, tmp_path) as s:
        assert await s.call("GET", "api/kernels") == (200, [])
    assert other.exists()


async def test_a_kept_kernel_is_served_while_the_gateway_is_down_and_forgotten_once_it_answers_404(
        own_gateway, tmp_path):
    port = free_port()
    with own_gateway(port=port) as gw:
        config = write_config(tmp_path, gw.url, persist=True)
        async with server(config, tmp_path) as s:
            session_id, kernel_id = await new_session(s)
    # the gateway stopped (and its kernels with it) while no Himalia ran
    async with server(config, tmp_path) as s:  # starts although the gateway cannot be asked
        assert record_path(tmp_path, kernel_id).exists()
        assert any("could not be asked" in line for line in s.proc.output), s.proc.output[-20:]
        status, body = await s.call("GET", f"api/kernels/{kernel_id}")
        assert status == 502, body  # ours still, but the gateway cannot say how it is
        with own_gateway(port=port):  # back, without the kernel
            status, _ = await s.call("GET", f"api/kernels/{kernel_id}")
            assert status == 404
            assert not record_path(tmp_path, kernel_id).exists()
            status, sessions = await s.call("GET", "api/sessions")
            assert status == 200 and session_id not in [m["id"] for m in sessions]


def himalia_kernels(config: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """`himalia kernels ARGS` as its own process, with no server running (the `himalia_kept_kernels` hooks)."""
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    env.pop("JUPYTER_GATEWAY_URL", None)
    return subprocess.run([sys.executable, "-m", "himalia.cli", "kernels", *args, "--config", str(config)],
                          capture_output=True, text=True, env=env, timeout=WAIT)


async def test_himalia_kernels_lists_and_stops_a_kept_gateway_kernel_with_no_server(gateway, tmp_path):
    config = write_config(tmp_path, gateway.url, persist=True)
    async with server(config, tmp_path) as s:
        _, kernel_id = await new_session(s)
        refused = himalia_kernels(config, tmp_path, "stop", kernel_id)
        assert refused.returncode == 1 and "in use by another server" in refused.stderr
        end(s, signal.SIGTERM)
    assert kernel_id in await on_gateway(gateway)

    listed = himalia_kernels(config, tmp_path, "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == f"{kernel_id}  python3  on the gateway  {gateway.url}\n"
    rows = [json.loads(line) for line in himalia_kernels(config, tmp_path, "list", "--json").stdout.splitlines()]
    assert [(r["id"], r["provider"], r["where"], r["kept"]) for r in rows] == \
        [(kernel_id, "gateway", gateway.url, True)]

    stopped = himalia_kernels(config, tmp_path, "stop", kernel_id[:8])
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout == f"stopped kernel {kernel_id} (python3)\n"
    assert kernel_id not in await on_gateway(gateway)  # the gateway's own GET /api/kernels
    assert not record_path(tmp_path, kernel_id).exists()
    assert himalia_kernels(config, tmp_path, "list", "--json").stdout == ""


async def test_himalia_kernels_stop_with_the_gateway_unreachable_fails_and_keeps_the_record(tmp_path):
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = write_config(tmp_path, down, persist=True)
    kernel_id = "0c8a47b4-1111-4000-8000-000000000000"
    record = record_path(tmp_path, kernel_id)
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"id": kernel_id, "name": "python3", "url": down, "keep": True}))
    listed = himalia_kernels(config, tmp_path, "list")
    assert listed.stdout == f"{kernel_id}  python3  on the gateway  {down}\n", listed.stderr

    stopped = himalia_kernels(config, tmp_path, "stop", "--all")
    assert stopped.returncode == 1
    assert stopped.stdout == ""
    [line] = stopped.stderr.splitlines()
    assert line.startswith(f"himalia kernels stop: kernel {kernel_id} (python3): the gateway at {down} is unreachable")
    assert record.exists()


async def test_himalia_kernels_stop_never_sends_the_credentials_to_another_gateway(gateway, tmp_path):
    config = write_config(tmp_path, gateway.url, persist=True)
    kernel_id = "0c8a47b4-2222-4000-8000-000000000000"
    record = record_path(tmp_path, kernel_id)
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"id": kernel_id, "name": "python3", "url": "http://127.0.0.1:9", "keep": True}))
    stopped = himalia_kernels(config, tmp_path, "stop", kernel_id)
    assert stopped.returncode == 1
    assert "recorded for the gateway http://127.0.0.1:9, but [plugins.gateway] url is" in stopped.stderr
    assert record.exists()
