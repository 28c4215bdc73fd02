"""The core's request guards (Host, Origin/CORS) and response headers, with any identity provider
or none: real servers on 127.0.0.1, real HTTP and websockets."""

from __future__ import annotations

import aiohttp
import pytest

TOKEN = "guards-token"
AUTH = {"plugins": {"auth": {"token": TOKEN}}}
NO_AUTH = {"server": {"allow_unauthenticated_access": True}}


def port_of(server) -> int:
    return int(server.url.split(":")[2].split("/")[0])


@pytest.mark.parametrize("config,disable", [(AUTH, ()), (NO_AUTH, ("auth",))], ids=["token", "no-auth"])
async def test_a_foreign_host_is_refused_even_when_it_is_also_the_origin(himalia_server, config, disable):
    """DNS rebinding: evil.example resolves to 127.0.0.1; the browser sends Host and Origin both
    evil.example, which a same-origin check alone lets through."""
    async with himalia_server(config=config, disable=disable) as server:
        port = port_of(server)
        rebound = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
        for path in ("/api", "/api/status", "/api/contents"):
            r = await server.get(path, headers=rebound)
            assert r.status == 403, path
            body = await r.json()
            assert body["reason"] == "host" and "evil.example" in body["message"]
        r = await server.post("/api/contents", headers=rebound, json={"type": "file"})
        assert r.status == 403
        assert not any(server.root_dir.iterdir()), "the refused POST created a file"
        for local in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "localhost"):
            r = await server.get("/api/status", headers={"Host": local})
            assert r.status == 200, local


async def test_allow_remote_access_and_local_hostnames_admit_other_names(himalia_server):
    async with himalia_server(config={**AUTH, "server": {"allow_remote_access": True}}) as server:
        assert (await server.get("/api/status", headers={"Host": "notebook.example"})).status == 200
    async with himalia_server(config={**AUTH, "server": {"local_hostnames": ["box.lan"]}}) as server:
        assert (await server.get("/api/status", headers={"Host": "box.lan:8888"})).status == 200
        assert (await server.get("/api/status", headers={"Host": "localhost:8888"})).status == 403


async def test_remote_access_defaults_from_the_listening_address(himalia_server):
    """jupyter_server's rule: listening on a non-loopback address means remote names are expected."""
    async with himalia_server(config={**AUTH, "server": {"ip": "0.0.0.0"}}) as server:
        assert (await server.get("/api/status", headers={"Host": "box.lan:8888"})).status == 200
    config = {**AUTH, "server": {"ip": "0.0.0.0", "allow_remote_access": False}}
    async with himalia_server(config=config) as server:
        assert (await server.get("/api/status", headers={"Host": "box.lan:8888"})).status == 403


async def test_without_auth_a_cross_origin_post_and_websocket_are_refused(himalia_server):
    """With no identity provider at all, the Origin check still holds: it is the core's."""
    async with himalia_server(config=NO_AUTH, disable=["auth"]) as server:
        assert server.token is None
        evil = {"Origin": "http://evil.example"}
        async with aiohttp.ClientSession() as browser:  # no credentials at all
            async with browser.post(server.url_for("/api/contents"), json={"type": "file"}, headers=evil) as r:
                assert r.status == 403 and (await r.json())["reason"] == "origin"
            assert not any(server.root_dir.iterdir()), "the cross-origin POST created a file"
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await browser.ws_connect(server.ws_url("/api/kernels/x/channels"), headers=evil)
            assert refused.value.status == 403
            same = {"Origin": server.url.rstrip("/")}
            async with browser.post(server.url_for("/api/contents"), json={"type": "file"}, headers=same) as r:
                assert r.status == 201


async def test_wildcard_origin_is_sent_literally_and_never_with_credentials(himalia_server):
    config = {**AUTH, "server": {"allow_origin": "*", "allow_credentials": True}}
    async with himalia_server(config=config) as server:
        r = await server.get("/api/status", headers={"Origin": "https://anywhere.example"})
        assert r.status == 200
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert "Access-Control-Allow-Credentials" not in r.headers
        preflight = {"Origin": "https://anywhere.example", "Access-Control-Request-Method": "POST"}
        async with aiohttp.ClientSession() as c:
            async with c.options(server.url_for("/api/sessions"), headers=preflight) as r:
                assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == "*"
                assert "Access-Control-Allow-Credentials" not in r.headers


async def test_the_old_auth_table_keys_say_where_they_went(himalia_server):
    from himalia.errors import ConfigError

    for key, value in (("allow_origin", "https://a.example"), ("allow_origin_pat", "x"),
                       ("allow_credentials", True)):
        with pytest.raises(ConfigError) as e:
            async with himalia_server(config={"plugins": {"auth": {"token": TOKEN, key: value}}}):
                pass  # pragma: no cover
        assert f"[plugins.auth] '{key}' has moved to [server] {key}" in str(e.value)


async def test_nosniff_on_every_response_and_sandbox_on_user_content(himalia_server):
    async with himalia_server(config=AUTH) as server:
        (server.root_dir / "page.html").write_text("<script>1</script>")
        async with aiohttp.ClientSession() as anonymous:
            async with anonymous.get(server.url_for("/api/status")) as r:
                assert r.status == 401 and r.headers["X-Content-Type-Options"] == "nosniff"
        for path, status in (("/api", 200), ("/api/status", 200), ("/api/nothing", 404),
                             ("/api/contents/page.html", 200)):
            r = await server.get(path)
            assert r.status == status and r.headers["X-Content-Type-Options"] == "nosniff", path
            assert "Content-Security-Policy" not in r.headers, path
        for path, status in (("/files/page.html", 200), ("/files/missing.html", 404)):
            r = await server.get(path)
            assert r.status == status, path
            assert r.headers["Content-Security-Policy"] == "sandbox allow-scripts", path
            assert r.headers["X-Content-Type-Options"] == "nosniff", path


async def test_a_route_declared_as_user_content_is_sandboxed(himalia_server):
    """Any plugin's route, not only /files/: the flag is the core's."""
    from aiohttp import web

    from himalia import Route, hookimpl
    from himalia import sandbox

    class Plugin:
        @hookimpl
        def himalia_routes(self, config):
            async def page(request):
                return web.Response(text="<script>1</script>", content_type="text/html")

            async def helper(request):
                return sandbox(web.Response(text="<svg/>", content_type="image/svg+xml"))

            return [Route("GET", "/converted", page, user_content=True), Route("GET", "/plain", helper)]

    async with himalia_server(config=AUTH, plugins={"converter": Plugin()}) as server:
        for path in ("/converted", "/plain"):
            r = await server.get(path)
            assert r.status == 200 and r.headers["Content-Security-Policy"] == "sandbox allow-scripts"
