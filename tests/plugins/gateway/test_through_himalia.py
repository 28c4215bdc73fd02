"""End to end: clients talk to Himalia's kernel routes and websocket (the kernels plugin), kernels run on
a real Kernel Gateway through the `gateway` provider."""

from __future__ import annotations

import asyncio
import os
import time

import aiohttp
import pytest
from gateway_kit import TOKEN, V1, WAIT, free_port, ws_execute, ws_read_reply, ws_receive, ws_send_execute

from himalia import HOOKS, SERVICES, hookimpl

pytestmark = pytest.mark.usefixtures("kernels_left")


def gateway_config(url: str, token: str = TOKEN, **settings) -> dict:
    return {"plugins": {"gateway": {"url": url, "auth_token": token, **settings}}}


async def test_the_gateway_provider_is_chosen_when_a_url_is_set(himalia_server, gateway):
    from himalia_gateway.manager import GatewayKernelManager

    def provider(server):
        return server.app[SERVICES].kernel_provider  # the kernels plugin's service serves it

    async with himalia_server(config=gateway_config(gateway.url)) as server:
        assert isinstance(provider(server), GatewayKernelManager)
    async with himalia_server() as server:
        assert not isinstance(provider(server), GatewayKernelManager)
    async with himalia_server(config={**gateway_config(gateway.url), "server": {"kernel_provider": "local"}}) as server:
        assert not isinstance(provider(server), GatewayKernelManager)


def test_the_gateway_url_flag(gateway, tmp_path, monkeypatch):
    from himalia.cli import build_from_argv

    monkeypatch.chdir(tmp_path)
    app, config = build_from_argv(["--gateway-url", gateway.url, "--gateway-auth-token", TOKEN])
    gateway_section = config.section("gateway")
    assert gateway_section.url == gateway.url and gateway_section.auth_token == TOKEN


def test_a_bad_gateway_url_is_a_config_error(tmp_path, monkeypatch):
    from himalia.cli import build_from_argv

    monkeypatch.chdir(tmp_path)
    with pytest.raises(Exception, match="'url' must start with http:// or https://"):
        build_from_argv(["--gateway-url", "gateway.example.com:8888"])


async def test_kernelspecs_and_their_resources(himalia_server, gateway):
    async with himalia_server(config=gateway_config(gateway.url)) as server:
        r = await server.get("/api/kernelspecs")
        assert r.status == 200
        specs = await r.json()
        assert specs["default"] == "python3"
        logo = specs["kernelspecs"]["python3"]["resources"]["logo-64x64"]
        assert logo == "/kernelspecs/python3/logo-64x64.png"
        r = await server.get(logo)
        assert r.status == 200 and r.content_type == "image/png" and (await r.read()).startswith(b"\x89PNG")
        r = await server.get("/api/kernelspecs/nope")
        assert r.status == 404 and "installed: python3" in (await r.json())["message"]


@pytest.mark.parametrize("protocol", [V1, "legacy"])
async def test_execute_interrupt_restart_delete(himalia_server, gateway, protocol):
    async with himalia_server(config=gateway_config(gateway.url)) as server:
        r = await server.post("/api/kernels", json={"name": "python3"})
        assert r.status == 201, await r.text()
        kid = (await r.json())["id"]
        assert (await gateway.aapi("GET", f"/api/kernels/{kid}"))[0] == 200  # it runs on the gateway
        protocols = (V1,) if protocol == V1 else ()
        async with server.ws_connect(f"/api/kernels/{kid}/channels?session_id=s1", protocols=protocols) as ws:
            assert ws.protocol == (V1 if protocol == V1 else None)
            out, reply = await ws_execute(ws, "import os; print(os.getpid())")
            assert reply["status"] == "ok" and out.strip().isdigit()
            pid = out.strip()
            assert (await server.post(f"/api/kernels/{kid}/interrupt")).status == 204
            r = await server.post(f"/api/kernels/{kid}/restart")
            assert r.status == 200 and (await r.json())["id"] == kid
            out, reply = await ws_execute(ws, "import os; print(os.getpid())")  # at once, as the upstream is rewired
            assert reply["status"] == "ok" and out.strip() != pid  # a new process, same websocket
        r = await server.get("/api/kernels")
        assert [k["id"] for k in await r.json()] == [kid]
        assert (await server.delete(f"/api/kernels/{kid}")).status == 204
        assert (await gateway.aapi("GET", f"/api/kernels/{kid}"))[0] == 404
        assert (await server.get(f"/api/kernels/{kid}")).status == 404


async def test_interrupt_stops_a_running_cell(himalia_server, gateway):
    async with himalia_server(config=gateway_config(gateway.url)) as server:
        kid = (await (await server.post("/api/kernels", json={})).json())["id"]
        async with server.ws_connect(f"/api/kernels/{kid}/channels", protocols=(V1,)) as ws:
            parent = await ws_send_execute(ws, "import time\nprint('start', flush=True)\ntime.sleep(120)")
            # the cell's own output says its code runs: an interrupt sent earlier ("busy" comes while the
            # kernel takes the request, when ipykernel still ignores SIGINT) could be lost
            async with asyncio.timeout(WAIT):
                while not ((got := await ws_receive(ws))["parent_header"].get("msg_id") == parent
                           and got["header"]["msg_type"] == "stream"):
                    pass
            assert got["content"]["text"] == "start\n"
            assert (await server.post(f"/api/kernels/{kid}/interrupt")).status == 204
            _, reply = await ws_read_reply(ws, parent)
            assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt"
        assert (await server.delete(f"/api/kernels/{kid}")).status == 204


async def test_status_shows_the_gateway(himalia_server, gateway):
    async with himalia_server(config=gateway_config(gateway.url)) as server:
        deadline = time.monotonic() + WAIT
        while (body := await (await server.get("/api/status")).json())["gateway"]["reachable"] is None:
            assert time.monotonic() < deadline, "the probe never answered"  # null: not asked yet
            await asyncio.sleep(0.02)  # bounded poll of the probe's first answer
        assert body["gateway"]["url"] == gateway.url
        assert body["gateway"]["reachable"] is True and body["gateway"]["error"] is None
    async with himalia_server() as server:
        assert "gateway" not in await (await server.get("/api/status")).json()
    async with himalia_server(config={**gateway_config(gateway.url), "server": {"kernel_provider": "local"}}) as server:
        assert "gateway" not in await (await server.get("/api/status")).json()  # configured, but not in use


async def test_a_wrong_token_is_a_clear_error(himalia_server, gateway):
    async with himalia_server(config=gateway_config(gateway.url, token="wrong")) as server:
        for method, path in (("GET", "/api/kernelspecs"), ("POST", "/api/kernels")):
            r = await server.request(method, path, json={} if method == "POST" else None)
            assert r.status == 502
            body = await r.json()
            assert "refused our credentials" in body["message"] and "auth_token" in body["message"]
            assert body["reason"] == "gateway unauthorized"
        status = await (await server.get("/api/status")).json()
        assert status["gateway"]["reachable"] is True and "credentials" in status["gateway"]["error"]


async def test_an_unreachable_gateway_is_a_502_and_the_server_keeps_serving(himalia_server):
    url = f"http://127.0.0.1:{free_port()}"
    async with himalia_server(config=gateway_config(url)) as server:
        r = await server.get("/api/kernelspecs")
        assert r.status == 502 and f"the gateway at {url} is unreachable" in (await r.json())["message"]
        r = await server.post("/api/kernels", json={})
        assert r.status == 502 and (await r.json())["reason"] == "gateway unreachable"
        assert (await server.get("/api/kernels")).status == 200  # none of ours: nothing to ask
        r = await server.get("/api/status")
        assert r.status == 200 and (await r.json())["gateway"]["reachable"] is False


async def test_the_gateway_stopped_mid_session(himalia_server, own_gateway):
    with own_gateway() as gw:
        config = gateway_config(gw.url, retry_interval=0.05, retry_interval_max=0.1, retry_max=3)
        async with himalia_server(config=config) as server:
            kid = (await (await server.post("/api/kernels", json={})).json())["id"]
            async with server.ws_connect(f"/api/kernels/{kid}/channels", protocols=(V1,)) as ws:
                assert (await ws_execute(ws, "print('alive')"))[0] == "alive\n"
                await asyncio.to_thread(gw.stop)
                async with asyncio.timeout(WAIT):  # the client's websocket is closed, not left hanging
                    while (await ws.receive()).type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                        pass
            for method, path in (("GET", f"/api/kernels/{kid}"), ("POST", f"/api/kernels/{kid}/interrupt"),
                                 ("DELETE", f"/api/kernels/{kid}")):
                r = await server.request(method, path)
                assert r.status == 502, (method, path, r.status)
                assert f"the gateway at {gw.url} is unreachable" in (await r.json())["message"]
            assert server.app[HOOKS].status(server.app)["gateway"]["reachable"] is False
            assert (await server.get("/api")).status == 200


async def test_status_still_answers_when_the_gateway_is_down_with_our_kernels(himalia_server, own_gateway):
    with own_gateway() as gw:
        async with himalia_server(config=gateway_config(gw.url)) as server:
            assert (await server.post("/api/kernels", json={})).status == 201
            await asyncio.to_thread(gw.stop)
            r = await server.get("/api/status")
            assert r.status == 200 and (await r.json())["gateway"]["reachable"] is False


async def test_sessions_work_unchanged_over_the_gateway(himalia_server, gateway):
    async with himalia_server(config=gateway_config(gateway.url)) as server:
        (server.root_dir / "work").mkdir()
        r = await server.post("/api/sessions", json={"path": "work/nb.ipynb", "type": "notebook", "name": "nb",
                                                     "kernel": {"name": "python3"}})
        assert r.status == 201, await r.text()
        session = await r.json()
        kid = session["kernel"]["id"]
        assert (await gateway.aapi("GET", f"/api/kernels/{kid}"))[0] == 200
        async with server.ws_connect(f"/api/kernels/{kid}/channels?session_id={session['id']}") as ws:
            out, reply = await ws_execute(ws, "import os; print(os.environ.get('KERNEL_WORKING_DIR'))")
            assert reply["status"] == "ok"
            assert out.strip() == str(server.root_dir / "work")  # where the notebook is, as jupyter_server sends it
        r = await server.get("/api/sessions")
        assert [s["kernel"]["id"] for s in await r.json()] == [kid]
        assert (await server.delete(f"/api/sessions/{session['id']}")).status == 204
        assert (await gateway.aapi("GET", f"/api/kernels/{kid}"))[0] == 404


async def test_a_dropped_upstream_is_reconnected_under_a_connected_client(himalia_server, gateway, proxy):
    config = gateway_config(proxy.url, retry_interval=0.05, retry_interval_max=0.1)
    async with himalia_server(config=config) as server:
        kid = (await (await server.post("/api/kernels", json={})).json())["id"]
        async with server.ws_connect(f"/api/kernels/{kid}/channels?session_id=s1", protocols=(V1,)) as ws:
            assert (await ws_execute(ws, "x = 41"))[1]["status"] == "ok"
            provider = server.app[SERVICES].kernel_provider
            (upstream,) = provider._channels[kid]
            assert upstream.protocol == V1  # negotiated end to end, unlike jupyter_server's gateway client
            handshakes = sum(b"/channels?" in r for r in proxy.requests)
            proxy.cut()
            deadline = time.monotonic() + WAIT
            while sum(b"/channels?" in r for r in proxy.requests) == handshakes:
                assert time.monotonic() < deadline, "never reconnected"
                await asyncio.sleep(0.02)  # bounded poll: the reconnection is only visible at the proxy
            out, reply = await ws_execute(ws, "print(x + 1)")  # the client never noticed
            assert out == "42\n" and reply["status"] == "ok"
        assert (await server.delete(f"/api/kernels/{kid}")).status == 204


async def test_a_new_websocket_works_once_the_gateway_is_back(himalia_server, gateway, proxy):
    config = gateway_config(proxy.url, retry_interval=0.01, retry_interval_max=0.02, retry_max=2)
    async with himalia_server(config=config) as server:
        kid = (await (await server.post("/api/kernels", json={})).json())["id"]
        try:
            async with server.ws_connect(f"/api/kernels/{kid}/channels", protocols=(V1,)) as ws:
                assert (await ws_execute(ws, "print(1)"))[0] == "1\n"
                proxy.refusing = True
                proxy.cut()
                async with asyncio.timeout(WAIT):  # retries exhausted: the client is told
                    while (await ws.receive()).type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                        pass
            proxy.refusing = False
            async with server.ws_connect(f"/api/kernels/{kid}/channels", protocols=(V1,)) as ws:
                assert (await ws_execute(ws, "print(2)"))[0] == "2\n"
        finally:
            proxy.refusing = False
            await server.delete(f"/api/kernels/{kid}")


async def test_himalia_serve_with_the_gateway_url_flag(gateway, tmp_path):
    """As jupyter_server users type it: `himalia serve --gateway-url URL`, a real process."""
    from himalia.testing import serve_process

    env = {**os.environ, "JUPYTER_GATEWAY_AUTH_TOKEN": TOKEN}
    with serve_process("--gateway-url", gateway.url, env=env, cwd=tmp_path) as himalia:
        async with aiohttp.ClientSession(headers=himalia.auth_headers) as client:
            async with asyncio.timeout(WAIT):
                async with client.get(himalia.url_for("/api/kernelspecs")) as r:
                    assert r.status == 200
                    specs = await r.json()
                async with client.get(himalia.url_for("/api/status")) as r:
                    assert (await r.json())["gateway"]["url"] == gateway.url
    assert specs["kernelspecs"]["python3"]["resources"]["logo-64x64"] == "/kernelspecs/python3/logo-64x64.png"


async def test_a_kernel_deleted_behind_our_back_is_dead_then_404(himalia_server, gateway):
    from gateway_kit import decode_v1

    stopped: list[tuple[str, str]] = []

    class Observer:  # a plugin watching the kernel events, as any plugin would
        @hookimpl
        def himalia_kernel_stopped(self, kernel_id, reason):
            stopped.append((kernel_id, reason))

    config = gateway_config(gateway.url, ping_interval=0.1)
    async with himalia_server(config=config, plugins={"observer": Observer()}) as server:
        kid = (await (await server.post("/api/kernels", json={})).json())["id"]
        async with server.ws_connect(f"/api/kernels/{kid}/channels", protocols=(V1,)) as ws:
            assert (await ws_execute(ws, "print('hi')"))[0] == "hi\n"
            assert (await gateway.aapi("DELETE", f"/api/kernels/{kid}"))[0] == 204
            async with asyncio.timeout(WAIT):
                while True:
                    frame = await ws.receive()
                    assert frame.type == aiohttp.WSMsgType.BINARY, frame
                    msg = decode_v1(frame.data)
                    if msg["header"]["msg_type"] == "status" and msg["content"]["execution_state"] == "dead":
                        break
            assert msg["content"]["reason"] == "gone from the gateway"
        r = await server.get(f"/api/kernels/{kid}")
        assert r.status == 404
        assert await (await server.get("/api/kernels")).json() == []
        assert stopped == [(kid, "gone from the gateway")]


async def test_one_session_create_opens_one_upstream_websocket(himalia_server, gateway, proxy):
    """One session create = one kernel start = one channel set: the websocket on which the gateway's
    kernel first answered is the one the relay keeps (the sessions plugin opens none of its own)."""
    async with himalia_server(config=gateway_config(proxy.url)) as server:
        r = await server.post("/api/sessions", json={"path": "nb.ipynb", "type": "notebook",
                                                     "kernel": {"name": "python3"}})
        assert r.status == 201, await r.text()
        session = await r.json()
        kid = session["kernel"]["id"]
        async with server.ws_connect(f"/api/kernels/{kid}/channels?session_id=c1", protocols=(V1,)) as ws:
            assert (await ws_execute(ws, "print(1)"))[0] == "1\n"
        handshakes = [r for r in proxy.requests if r.startswith(b"GET ") and b"/channels?" in r]
        assert len(handshakes) == 1, handshakes
        assert (await server.delete(f"/api/sessions/{session['id']}")).status == 204


async def test_a_remote_kernel_s_death_under_the_gateway_s_autorestart_is_restarting_then_restarted(
        himalia_server, gateway):
    """The kernel service reads transitions off the statuses any provider relays: a kernel killed on the
    gateway, which restarts it, is himalia_kernel_restarting then himalia_kernel_restarted."""
    seen: list[tuple[str, str, str]] = []
    changed = asyncio.Event()

    class Observer:
        @hookimpl
        def himalia_kernel_restarting(self, kernel_id, reason):
            seen.append(("restarting", kernel_id, reason))
            changed.set()

        @hookimpl
        def himalia_kernel_restarted(self, kernel_id, reason):
            seen.append(("restarted", kernel_id, reason))
            changed.set()

    async with himalia_server(config=gateway_config(gateway.url), plugins={"observer": Observer()}) as server:
        kid = (await (await server.post("/api/kernels", json={})).json())["id"]
        async with server.ws_connect(f"/api/kernels/{kid}/channels", protocols=(V1,)) as ws:
            await ws_send_execute(ws, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
            async with asyncio.timeout(WAIT):
                while not any(event == "restarted" for event, _, _ in seen):
                    changed.clear()
                    await changed.wait()
        assert [event for event, _, _ in seen] == ["restarting", "restarted"]
        assert {k for _, k, _ in seen} == {kid}
        assert (await server.delete(f"/api/kernels/{kid}")).status == 204
