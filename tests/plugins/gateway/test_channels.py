"""`KernelChannels` over the gateway's websocket: both upstream protocols, session_id, reconnects,
keepalive pings, and close propagation both ways."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import web
from gateway_kit import WAIT, drain, execute_request, gateway_manager, run_code

from himalia import ChannelsClosed, NotFound

pytestmark = pytest.mark.usefixtures("kernels_left")
V1 = "v1.kernel.websocket.jupyter.org"


async def test_execute_over_the_v1_protocol(gateway, proxy):
    async with gateway_manager(proxy.url) as manager:
        kid = (await manager.start_kernel())["id"]
        channels = await manager.open_channels(kid, session_id="my-session")
        try:
            assert channels.protocol == V1
            out, reply = await run_code(channels, "print(6 * 7)")
            assert out == "42\n" and reply["status"] == "ok"
        finally:
            await channels.close()
        # the start's own websocket (readiness) came first; a caller's session_id gets a websocket of its own
        handshake = next(r for r in proxy.requests if r.startswith(b"GET ") and b"my-session" in r).decode("latin-1")
        assert f"/api/kernels/{kid}/channels?session_id=my-session " in handshake
        assert f"Sec-WebSocket-Protocol: {V1}" in handshake


async def test_execute_over_the_legacy_protocol(gateway):
    from himalia_gateway.channels import GatewayChannels

    async with gateway_manager(gateway.url) as manager:
        kid = (await manager.start_kernel())["id"]
        channels = await GatewayChannels.open(manager.client, kid, offer_v1=False)
        try:
            assert channels.protocol == ""
            out, reply = await run_code(channels, "print('legacy', 1 + 1)")
            assert out == "legacy 2\n" and reply["status"] == "ok"
        finally:
            await channels.close()


async def test_binary_buffers_round_trip_in_both_protocols(gateway):
    """A comm message with a buffer goes up and the kernel echoes it back, in v1 and legacy frames."""
    from himalia.wire import from_legacy_binary, from_v1, to_legacy, to_v1
    from himalia_gateway.channels import GatewayChannels

    msg = execute_request("x")
    msg.buffers = [b"\x00\x01binary"]
    assert from_v1(to_v1(msg)).buffers == msg.buffers
    frame, binary = to_legacy(msg)
    assert binary and from_legacy_binary(frame).buffers == msg.buffers
    assert from_legacy_binary(frame).content == msg.content
    async with gateway_manager(gateway.url) as manager:
        kid = (await manager.start_kernel())["id"]
        for offer_v1 in (True, False):
            channels = await GatewayChannels.open(manager.client, kid, offer_v1=offer_v1)
            try:
                out, reply = await run_code(channels, "print('ok')")
                assert out == "ok\n"
            finally:
                await channels.close()


async def test_the_upstream_drops_and_comes_back(gateway, proxy):
    async with gateway_manager(proxy.url, retry_interval=0.05, retry_interval_max=0.2) as manager:
        kid = (await manager.start_kernel())["id"]
        channels = await manager.open_channels(kid)
        try:
            assert (await run_code(channels, "a = 1; print(a)"))[0] == "1\n"
            proxy.cut()
            # a message sent into a connection that is dying unnoticed is lost, as with any websocket
            await asyncio.wait_for(channels.reconnected.wait(), WAIT)
            out, reply = await run_code(channels, "print(a + 1)")  # the same kernel, state kept
            assert out == "2\n" and reply["status"] == "ok"
            assert channels.reconnects == 1
            handshakes = [r.decode("latin-1") for r in proxy.requests if b"/channels?" in r]
            assert len(handshakes) == 2
            assert all(f"session_id={channels.session_id} " in h for h in handshakes)
        finally:
            await channels.close()


async def test_a_restart_rewires_the_upstream(gateway):
    """A restart may move the kernel to new ports, which only a new gateway websocket follows."""
    async with gateway_manager(gateway.url) as manager:
        kid = (await manager.start_kernel())["id"]
        channels = await manager.open_channels(kid)
        try:
            assert (await run_code(channels, "import os; print(os.getpid())"))[1]["status"] == "ok"
            await manager.restart_kernel(kid)
            assert channels.reconnects == 1 and not channels.closed
            out, reply = await run_code(channels, "print('after restart')")  # at once, no kernel_info dance
            assert out == "after restart\n" and reply["status"] == "ok"
        finally:
            await channels.close()


async def test_output_produced_while_disconnected_is_replayed(gateway, proxy, tmp_path):
    """The stable session_id lets the gateway buffer what the kernel said while we were away."""
    flag = tmp_path / "go"
    async with gateway_manager(proxy.url, retry_interval=0.05, retry_interval_max=0.2, retry_max=1000) as manager:
        kid = (await manager.start_kernel())["id"]
        channels = await manager.open_channels(kid)
        try:
            request = execute_request(f"import os, time\nwhile not os.path.exists({str(flag)!r}): time.sleep(0.02)\n"
                                      "print('said while away')")
            await channels.send(request)
            async with asyncio.timeout(WAIT):  # the kernel has the request
                while (await channels.recv()).msg_type != "execute_input":
                    pass
            proxy.refusing = True
            proxy.cut()
            # the gateway buffers for a session only once it has seen the websocket go: wait for that
            # (its model's connection count) before the kernel prints, or the output goes to the dead socket
            deadline = time.monotonic() + WAIT
            while (await gateway.aapi("GET", f"/api/kernels/{kid}"))[1].get("connections", 0):
                assert time.monotonic() < deadline, "the gateway never saw the websocket close"
                await asyncio.sleep(0.05)  # bounded poll: the gateway offers no event for this
            flag.touch()
            deadline = time.monotonic() + WAIT
            while (await gateway.aapi("GET", f"/api/kernels/{kid}"))[1]["execution_state"] != "idle":
                assert time.monotonic() < deadline, "the kernel never finished"
                await asyncio.sleep(0.05)  # bounded poll: the gateway offers no event for this
            proxy.refusing = False
            parent = request.header_dict["msg_id"]
            seen = []
            async with asyncio.timeout(WAIT):
                while "execute_reply" not in seen:
                    msg = await channels.recv()
                    if json.loads(msg.parent_header).get("msg_id") == parent:
                        seen.append(msg.msg_type)
                        if msg.msg_type == "stream":
                            assert json.loads(msg.content)["text"] == "said while away\n"
            assert "stream" in seen
        finally:
            await channels.close()


async def test_retries_are_bounded_then_the_channels_close(gateway, proxy):
    async with gateway_manager(proxy.url, retry_interval=0.01, retry_interval_max=0.02, retry_max=3) as manager:
        kid = (await manager.start_kernel())["id"]
        channels = await manager.open_channels(kid)
        try:
            accepted = proxy.accepted
            proxy.refusing = True
            proxy.cut()
            with pytest.raises(ChannelsClosed, match="after 3 reconnection attempts"):
                async with asyncio.timeout(WAIT):
                    while True:
                        msg = await channels.recv()
                        assert msg.msg_type != "status" or b"dead" not in msg.content  # the kernel may be fine
            with pytest.raises(ChannelsClosed):
                await channels.send(execute_request("1"))
            assert proxy.accepted == accepted  # refused connections are not accepted
            assert manager.client.health.reachable is False
        finally:
            await channels.close()
            proxy.refusing = False


async def test_a_kernel_deleted_on_the_gateway_ends_its_channels_dead(gateway):
    async with gateway_manager(gateway.url, retry_interval=0.01, ping_interval=0.1) as manager:
        kid = (await manager.start_kernel())["id"]
        channels = await manager.open_channels(kid)
        try:
            await gateway.aapi("DELETE", f"/api/kernels/{kid}")  # the gateway keeps the websocket open
            last = (await drain(channels))[-1]
            assert last.channel == "iopub" and last.msg_type == "status"
            assert json.loads(last.content) == {"execution_state": "dead", "reason": "gone from the gateway"}
            with pytest.raises(NotFound):
                await manager.open_channels(kid)
        finally:
            await channels.close()


async def test_shutdown_closes_the_channels_and_close_reaches_the_gateway(gateway):
    async with gateway_manager(gateway.url) as manager:
        kid = (await manager.start_kernel())["id"]
        first = await manager.open_channels(kid)
        await run_code(first, "1")
        assert (await gateway.aapi("GET", f"/api/kernels/{kid}"))[1]["connections"] == 1
        await first.close()
        with pytest.raises(ChannelsClosed):
            await first.recv()
        deadline = time.monotonic() + WAIT
        while (await gateway.aapi("GET", f"/api/kernels/{kid}"))[1]["connections"] != 0:
            assert time.monotonic() < deadline, "the gateway kept our websocket"
            await asyncio.sleep(0.05)  # bounded poll of the gateway's own count
        second = await manager.open_channels(kid)
        await manager.shutdown_kernel(kid)
        with pytest.raises(ChannelsClosed):
            async with asyncio.timeout(WAIT):
                while True:
                    await second.recv()


async def test_opening_channels_of_an_unknown_kernel_is_404(gateway):
    async with gateway_manager(gateway.url) as manager:
        with pytest.raises(NotFound):
            await manager.open_channels("00000000-0000-0000-0000-000000000000")


async def test_keepalive_pings_go_upstream():
    """A stand-in gateway websocket (a real aiohttp server) sees our pings and the session_id."""
    from himalia_gateway.channels import GatewayChannels
    from himalia_gateway.client import GatewayClient
    from himalia_gateway.config import GatewayConfig

    pinged = asyncio.Event()
    seen: dict[str, str] = {}

    async def channels_ws(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False, protocols=(V1,))
        await ws.prepare(request)
        seen["session_id"] = request.query.get("session_id", "")
        async for msg in ws:
            if msg.type.name == "PING":
                pinged.set()
                await ws.pong(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/api/kernels/{kid}/channels", channels_ws)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        config = GatewayConfig(url=f"http://127.0.0.1:{port}", ping_interval=0.05).effective()
        async with GatewayClient(config) as client:
            channels = await GatewayChannels.open(client, "k1", session_id="s1")
            try:
                await asyncio.wait_for(pinged.wait(), WAIT)
                assert channels.protocol == V1 and seen["session_id"] == "s1"
            finally:
                await channels.close()
    finally:
        await runner.cleanup()
