"""Kernel and kernelspec REST routes, the websocket's refusals, events and the OpenAPI fragment."""

from __future__ import annotations

import json

import aiohttp
import pytest
from kernel_ws import V1, connect, running_kernel

from himalia import hookimpl


class Recorder:
    def __init__(self):
        self.events: list[tuple[str, str, str]] = []

    @hookimpl
    def himalia_kernel_started(self, kernel_id, name):
        self.events.append(("started", kernel_id, name))

    @hookimpl
    def himalia_kernel_stopped(self, kernel_id, reason):
        self.events.append(("stopped", kernel_id, reason))


async def test_kernelspecs(himalia_server):
    async with himalia_server(config={"server": {"base_url": "/base/"}}) as server:
        r = await server.get("/api/kernelspecs")
        assert r.status == 200
        body = await r.json()
        assert body["default"] == "python3"
        spec = body["kernelspecs"]["python3"]
        assert spec["name"] == "python3"
        assert spec["spec"]["language"] == "python" and spec["spec"]["argv"]
        assert spec["resources"]["logo-64x64"] == "/base/kernelspecs/python3/logo-64x64.png"

        r = await server.get("/api/kernelspecs/python3")
        assert r.status == 200 and (await r.json()) == spec

        r = await server.get("/kernelspecs/python3/logo-64x64.png")
        assert r.status == 200 and r.content_type == "image/png"
        assert (await r.read()).startswith(b"\x89PNG")

        for path in ("/api/kernelspecs/nope", "/kernelspecs/nope/logo-64x64.png",
                     "/kernelspecs/python3/missing.png", "/kernelspecs/python3/..%2Fkernel.json"):
            r = await server.get(path)
            assert r.status == 404, path
            assert set(await r.json()) == {"message", "reason"}
        r = await server.get("/api/kernelspecs/nope")
        assert "installed: python3" in (await r.json())["message"]


async def test_kernel_lifecycle_over_rest(himalia_server):
    recorder = Recorder()
    async with himalia_server(plugins={"recorder": recorder}) as server:
        (server.root_dir / "sub").mkdir()
        r = await server.post("/api/kernels", json={"name": "python3", "path": "sub/nb.ipynb",
                                                    "env": {"HIMALIA_TEST_VAR": "42"}})
        assert r.status == 201
        model = await r.json()
        kid = model["id"]
        assert r.headers["Location"] == f"/api/kernels/{kid}"
        assert set(model) >= {"id", "name", "last_activity", "execution_state", "connections"}
        assert model["name"] == "python3" and model["connections"] == 0
        assert recorder.events == [("started", kid, "python3")]
        try:
            assert [k["id"] for k in await (await server.get("/api/kernels")).json()] == [kid]
            async with connect(server, kid, V1) as ws:
                ex = await ws.execute("import os; print(os.getcwd(), os.environ['HIMALIA_TEST_VAR'])")
                assert ex.stdout == f"{server.root_dir / 'sub'} 42\n"
                got = await (await server.get(f"/api/kernels/{kid}")).json()
                assert got["execution_state"] == "idle" and got["connections"] == 1
                assert got["last_activity"] >= model["last_activity"]
            assert (await server.post(f"/api/kernels/{kid}/interrupt")).status == 204
            r = await server.post(f"/api/kernels/{kid}/restart")
            assert r.status == 200 and (await r.json())["id"] == kid
        finally:
            r = await server.delete(f"/api/kernels/{kid}")
        assert r.status == 204
        assert recorder.events[-1] == ("stopped", kid, "deleted")
        assert (await server.get(f"/api/kernels/{kid}")).status == 404
        assert await (await server.get("/api/kernels")).json() == []


async def test_default_kernel_and_empty_body(himalia_server):
    async with himalia_server() as server:
        r = await server.post("/api/kernels")
        assert r.status == 201
        kid = (await r.json())["id"]
        assert (await r.json())["name"] == "python3"
        assert (await server.delete(f"/api/kernels/{kid}")).status == 204


@pytest.mark.parametrize("body, status, words", [
    ({"name": "nope"}, 404, "installed: python3"),
    ({"name": 5}, 400, "'name' must be a string"),
    ({"env": {"A": 1}}, 400, "'env'"),
    ({"path": "../outside"}, 400, "outside the server's root"),
    ("[1]", 400, "JSON object"),
])
async def test_start_refuses_bad_input(himalia_server, body, status, words):
    async with himalia_server() as server:
        kwargs = {"data": body} if isinstance(body, str) else {"json": body}
        r = await server.post("/api/kernels", **kwargs)
        assert r.status == status
        error = await r.json()
        assert words in error["message"] and error["reason"]
        assert await (await server.get("/api/kernels")).json() == []


async def test_unknown_kernel_id_is_404_everywhere(himalia_server):
    async with himalia_server() as server:
        kid = "00000000-0000-0000-0000-000000000000"
        for method, path in [("GET", f"/api/kernels/{kid}"), ("DELETE", f"/api/kernels/{kid}"),
                             ("POST", f"/api/kernels/{kid}/interrupt"), ("POST", f"/api/kernels/{kid}/restart"),
                             ("GET", f"/api/kernels/{kid}/channels")]:
            r = await server.request(method, path)
            assert r.status == 404, (method, path)
            assert kid in (await r.json())["message"]
        # the websocket upgrade is refused before anything is allocated, however often it is tried
        from himalia import SERVICES

        for _ in range(20):
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await server.ws_connect(f"/api/kernels/{kid}/channels?session_id=s")
            assert e.value.status == 404
        assert server.app[SERVICES].kernels.hubs == {}


async def test_channels_need_a_websocket_upgrade(himalia_server):
    async with himalia_server() as server, running_kernel(server) as kernel:
        r = await server.get(f"/api/kernels/{kernel['id']}/channels")
        assert r.status == 400
        assert "websocket" in (await r.json())["message"]


async def test_openapi_describes_the_routes(himalia_server):
    async with himalia_server() as server:
        spec = json.loads(await (await server.get("/api/spec.yaml")).text())
        for path in ("/api/kernels", "/api/kernels/{kernel_id}", "/api/kernels/{kernel_id}/channels",
                     "/api/kernels/{kernel_id}/interrupt", "/api/kernels/{kernel_id}/restart",
                     "/api/kernelspecs", "/api/kernelspecs/{name}", "/kernelspecs/{name}/{resource}"):
            assert path in spec["paths"], path
        assert set(spec["paths"]["/api/kernels"]) == {"get", "post"}
        assert "reason" in spec["components"]["schemas"]["Kernel"]["properties"]
