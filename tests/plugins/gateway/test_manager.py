"""The `gateway` KernelManager against a real Kernel Gateway: specs, lifecycle, env, and errors."""

from __future__ import annotations

import asyncio
import json

import pytest
from gateway_kit import TOKEN, drain, gateway_manager

from himalia import ApiError, BadGateway, GatewayTimeout, KernelManager, NotFound

pytestmark = pytest.mark.usefixtures("kernels_left")


async def test_it_is_a_kernel_manager(gateway):
    async with gateway_manager(gateway.url) as manager:
        assert isinstance(manager, KernelManager)


async def test_kernelspecs_and_resources_come_from_the_gateway(gateway):
    async with gateway_manager(gateway.url) as manager:
        specs = await manager.list_kernelspecs()
        assert specs["default"] == "python3"
        python3 = specs["kernelspecs"]["python3"]
        assert python3["spec"]["language"] == "python"
        assert python3["resources"]["logo-64x64"] == "logo-64x64.png"  # the kernels plugin makes it a URL
        assert (await manager.get_kernelspec("python3"))["name"] == "python3"
        data, ctype = await manager.get_kernelspec_resource("python3", "logo-64x64.png")
        assert ctype == "image/png" and data.startswith(b"\x89PNG")
        with pytest.raises(NotFound, match="no kernelspec named nope on the gateway; installed: python3"):
            await manager.get_kernelspec("nope")
        with pytest.raises(NotFound, match="no resource missing.png"):
            await manager.get_kernelspec_resource("python3", "missing.png")


async def test_kernel_lifecycle(gateway):
    async with gateway_manager(gateway.url) as manager:
        model = await manager.start_kernel("python3")
        kid = model["id"]
        assert model["name"] == "python3"
        assert [k["id"] for k in await manager.list_kernels()] == [kid]
        assert (await manager.get_kernel(kid))["id"] == kid
        await manager.interrupt_kernel(kid)
        restarted = await manager.restart_kernel(kid)
        assert restarted["id"] == kid
        await manager.shutdown_kernel(kid)
        assert await manager.list_kernels() == []
        assert (await gateway.aapi("GET", f"/api/kernels/{kid}"))[0] == 404
        with pytest.raises(NotFound, match=f"no kernel with id {kid}"):
            await manager.get_kernel(kid)


async def test_the_default_kernel_is_the_gateways(gateway):
    async with gateway_manager(gateway.url) as manager:
        model = await manager.start_kernel()
        assert model["name"] == "python3"


async def test_unknown_kernel_name_is_404_naming_the_installed_ones(gateway):
    async with gateway_manager(gateway.url) as manager:
        with pytest.raises(NotFound, match="no kernelspec named nope on the gateway; installed: python3"):
            await manager.start_kernel("nope")


async def test_only_our_kernels_are_listed(gateway):
    status, other = await gateway.aapi("POST", "/api/kernels", {"name": "python3"})
    assert status == 201
    try:
        async with gateway_manager(gateway.url) as manager:
            ours = await manager.start_kernel()
            assert [k["id"] for k in await manager.list_kernels()] == [ours["id"]]
            with pytest.raises(NotFound):
                await manager.get_kernel(other["id"])
    finally:
        await gateway.aapi("DELETE", f"/api/kernels/{other['id']}")


async def test_kernels_are_listed_when_the_gateway_forbids_listing(own_gateway):
    with own_gateway() as gw:  # Kernel Gateway's default: GET /api/kernels is 403
        async with gateway_manager(gw.url) as manager:
            a = await manager.start_kernel()
            b = await manager.start_kernel()
            assert sorted(k["id"] for k in await manager.list_kernels()) == sorted([a["id"], b["id"]])


async def test_a_kernel_that_disappears_is_reported_gone(gateway):
    async with gateway_manager(gateway.url, ping_interval=0) as manager:
        kid = (await manager.start_kernel())["id"]
        channels = await manager.open_channels(kid)
        assert (await gateway.aapi("DELETE", f"/api/kernels/{kid}"))[0] == 204
        with pytest.raises(NotFound, match=f"kernel {kid} is gone from the gateway"):
            await manager.get_kernel(kid)
        last = (await drain(channels))[-1]  # the relay learns it as it learns a local kernel's death
        assert last.msg_type == "status" and json.loads(last.content) == {
            "execution_state": "dead", "reason": "gone from the gateway"}
        assert await manager.list_kernels() == []


async def test_a_kernel_gone_before_an_interrupt_is_404(gateway):
    async with gateway_manager(gateway.url) as manager:
        kid = (await manager.start_kernel())["id"]
        await gateway.aapi("DELETE", f"/api/kernels/{kid}")
        with pytest.raises(NotFound, match="gone from the gateway"):
            await manager.interrupt_kernel(kid)


async def test_env_propagation_follows_jupyter_server(gateway, monkeypatch):
    monkeypatch.setenv("KERNEL_USERNAME", "alice")
    monkeypatch.setenv("KERNEL_FROM_SERVER", "server")
    monkeypatch.setenv("ALLOWED_ONE", "allowed")
    monkeypatch.setenv("SECRET_ONE", "secret")
    async with gateway_manager(gateway.url, allowed_envs=["ALLOWED_ONE"]) as manager:
        env = manager.kernel_env("work/dir", {"KERNEL_FROM_REQUEST": "request", "OTHER": "x"})
        assert env["KERNEL_USERNAME"] == "alice"
        assert env["KERNEL_FROM_SERVER"] == "server" and env["KERNEL_FROM_REQUEST"] == "request"
        assert env["ALLOWED_ONE"] == "allowed"
        assert "SECRET_ONE" not in env and "OTHER" not in env and "PATH" not in env
        assert env["KERNEL_WORKING_DIR"] == "/srv/notebooks/work/dir"
        assert env["KERNEL_LAUNCH_TIMEOUT"] == "40"
        kid = (await manager.start_kernel(env={"KERNEL_FROM_REQUEST": "request"}))["id"]
        channels = await manager.open_channels(kid)
        try:
            from gateway_kit import run_code

            out, reply = await run_code(channels, "import os; print(os.environ.get('KERNEL_USERNAME'), "
                                                  "os.environ.get('KERNEL_FROM_REQUEST'))")
            assert reply["status"] == "ok" and out == "alice request\n"
        finally:
            await channels.close()


async def test_a_wrong_token_is_a_clear_502(gateway):
    async with gateway_manager(gateway.url, token="wrong") as manager:
        with pytest.raises(BadGateway, match="refused our credentials.*check \\[plugins.gateway\\] auth_token"):
            await manager.list_kernelspecs()
        with pytest.raises(BadGateway) as e:
            await manager.start_kernel()
        assert e.value.status == 502 and e.value.reason == "gateway unauthorized"
        assert manager.client.health.reachable is True and "credentials" in manager.client.health.error


async def test_an_unreachable_gateway_is_a_clear_502(gateway):
    from gateway_kit import free_port

    url = f"http://127.0.0.1:{free_port()}"
    async with gateway_manager(url) as manager:
        with pytest.raises(BadGateway, match=f"the gateway at {url} is unreachable \\(GET /api/kernelspecs\\)"):
            await manager.list_kernelspecs()
        with pytest.raises(BadGateway, match="unreachable \\(POST /api/kernels\\)"):
            await manager.start_kernel()
        assert manager.client.health.reachable is False


async def test_a_silent_gateway_is_a_504(gateway):
    accepted = asyncio.Event()

    async def never_answer(reader, writer):
        accepted.set()
        await reader.read()  # hold the connection open without answering, until the client gives up
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with gateway_manager(f"http://127.0.0.1:{port}", request_timeout=0.5) as manager:
            with pytest.raises(GatewayTimeout, match="did not answer GET /api/kernelspecs within 0.5s") as e:
                await manager.list_kernelspecs()
            assert e.value.status == 504 and accepted.is_set()
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), 10)


async def test_the_gateways_4xx_is_passed_on_with_its_message(gateway):
    async with gateway_manager(gateway.url) as manager:
        with pytest.raises(ApiError) as e:
            await manager.client.request_json("POST", "/api/kernels", body={"env": "not an object"})
        assert e.value.status == 400 and e.value.message.startswith("gateway: ")


async def test_leaving_the_provider_shuts_our_kernels_down(gateway):
    async with gateway_manager(gateway.url) as manager:
        kids = [(await manager.start_kernel())["id"] for _ in range(2)]
    for kid in kids:
        assert (await gateway.aapi("GET", f"/api/kernels/{kid}"))[0] == 404


async def test_token_from_the_environment(gateway, monkeypatch):
    monkeypatch.setenv("JUPYTER_GATEWAY_AUTH_TOKEN", TOKEN)
    async with gateway_manager(gateway.url, token="") as manager:
        assert "python3" in (await manager.list_kernelspecs())["kernelspecs"]


async def test_tls_gateway(own_gateway, tmp_path):
    from gateway_kit import run_code, self_signed_certificate

    cert, key = await asyncio.to_thread(self_signed_certificate, tmp_path)
    with own_gateway(tls=(cert, key)) as gw:
        assert gw.url.startswith("https://")
        async with gateway_manager(gw.url) as manager:  # the system's CAs do not know our certificate
            with pytest.raises(BadGateway, match="TLS with the gateway at .* failed .*check \\[plugins.gateway\\] "
                                                 "ca_certs") as e:
                await manager.list_kernelspecs()
            assert e.value.reason == "gateway tls error"
        async with gateway_manager(gw.url, validate_cert=False) as manager:
            assert "python3" in (await manager.list_kernelspecs())["kernelspecs"]
        async with gateway_manager(gw.url, ca_certs=str(cert)) as manager:
            kid = (await manager.start_kernel())["id"]
            channels = await manager.open_channels(kid)  # wss:// with the same TLS settings
            try:
                assert (await run_code(channels, "print('over tls')"))[0] == "over tls\n"
            finally:
                await channels.close()
