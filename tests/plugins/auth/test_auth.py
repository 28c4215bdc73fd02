"""Token auth: every route and websocket refuses strangers; cookie login with XSRF; CORS; /api/me."""

from __future__ import annotations

import logging
import re

import aiohttp
import pytest

TOKEN = "s3cret-token-for-tests"
AUTH = {"plugins": {"auth": {"token": TOKEN}}}


def concrete(path: str) -> str:
    """A URL for a route pattern: every {param} or {param:regex} becomes a plausible value."""
    return re.sub(r"\{[^}]+\}", "x", path)


def protected_routes(app):
    from himalia.keys import ROUTE_AUTH

    for route in app.router.routes():
        if app[ROUTE_AUTH].get(route, True):
            yield route.method, route.resource.canonical


async def test_every_route_rejects_a_missing_or_wrong_token(himalia_server):
    async with himalia_server(config=AUTH) as server:
        routes = sorted(set(protected_routes(server.app)))
        assert ("GET", "/api/status") in routes and ("GET", "/api/me") in routes
        async with aiohttp.ClientSession() as anonymous:
            for method, path in routes:
                url = server.url_for(concrete(path))
                for headers in ({}, {"Authorization": "token wrong"}, {"Authorization": f"token {TOKEN}x"}):
                    async with anonymous.request(method, url, headers=headers) as r:
                        assert r.status == 401, f"{method} {path} with {headers} answered {r.status}"
                        body = await r.json()
                        assert body["reason"] in ("missing token", "invalid token")


async def test_only_the_version_route_opts_out_of_auth(himalia_server):
    """A route that opts out is not in the list above: so the opted-out set itself is pinned."""
    from himalia.keys import ROUTE_AUTH

    async with himalia_server(config=AUTH) as server:
        opted_out = {(r.method, r.resource.canonical) for r in server.app.router.routes()
                     if not server.app[ROUTE_AUTH].get(r, True)}
        assert opted_out <= {("GET", "/api"), ("GET", "/api/")} and ("GET", "/api") in opted_out


async def test_unauthenticated_requests_learn_nothing_about_ids(himalia_server):
    """jupyter_server answers 404 for an unknown kernel without a token; we answer 401 first."""
    async with himalia_server(config=AUTH) as server:
        async with aiohttp.ClientSession() as anonymous:
            async with anonymous.get(server.url_for("/api/kernels/00000000-0000-0000-0000-000000000000")) as r:
                assert r.status == 401
            async with anonymous.get(server.url_for("/api/no/such/thing")) as r:
                assert r.status == 401


async def test_websocket_upgrade_is_refused_without_a_token(himalia_server):
    async with himalia_server(config=AUTH) as server:
        async with aiohttp.ClientSession() as anonymous:
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await anonymous.ws_connect(server.url_for("/api/kernels/x/channels"))
            assert e.value.status == 401



@pytest.mark.parametrize("suffix, headers", [
    ("", {"Authorization": "token wrong"}),
    ("", {"Authorization": f"Bearer {TOKEN}x"}),
    ("?token=wrong", {}),
], ids=["header", "bearer", "query"])
async def test_websocket_upgrade_with_a_wrong_token_is_refused(himalia_server, suffix, headers):
    async with himalia_server(config=AUTH) as server:
        channels = server.url_for("/api/kernels/00000000-0000-0000-0000-000000000000/channels")
        async with aiohttp.ClientSession() as anonymous:
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await anonymous.ws_connect(channels + suffix, headers=headers)
            assert e.value.status == 401
            # the right token gets past auth to the handler, which knows no such kernel
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await anonymous.ws_connect(channels, headers={"Authorization": f"token {TOKEN}"})
            assert e.value.status == 404

async def test_header_schemes_token_and_bearer(himalia_server):
    async with himalia_server(config=AUTH) as server:
        async with aiohttp.ClientSession() as c:
            for value in (f"token {TOKEN}", f"Bearer {TOKEN}", f"TOKEN  {TOKEN} "):
                async with c.get(server.url_for("/api/status"), headers={"Authorization": value}) as r:
                    assert r.status == 200, value


async def test_query_token_logs_in_with_a_cookie_and_xsrf_guards_unsafe_methods(himalia_server):
    async with himalia_server(config=AUTH) as server:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.get(server.url_for(f"/?token={TOKEN}")) as r:
                assert r.status == 200
            cookies = {c.key: c.value for c in browser.cookie_jar}
            assert "himalia-login" in cookies and "_xsrf" in cookies
            assert TOKEN not in cookies["himalia-login"]
            # the cookie alone authenticates safe requests
            async with browser.get(server.url_for("/api/me")) as r:
                assert r.status == 200
            # unsafe methods need the XSRF header matching the cookie
            async with browser.post(server.url_for("/api/status")) as r:
                assert r.status == 403
                assert (await r.json())["reason"] == "xsrf"
            async with browser.post(server.url_for("/api/status"), headers={"X-XSRFToken": "forged"}) as r:
                assert r.status == 403
            async with browser.post(server.url_for("/api/status"), headers={"X-XSRFToken": cookies["_xsrf"]}) as r:
                assert r.status == 405  # past auth and XSRF: the route only has GET


async def test_wrong_query_token_is_refused(himalia_server):
    async with himalia_server(config=AUTH) as server:
        async with aiohttp.ClientSession() as c:
            async with c.get(server.url_for("/?token=nope")) as r:
                assert r.status == 401
                assert "set-cookie" not in {k.lower() for k in r.headers}


async def test_forged_cookie_is_refused(himalia_server):
    async with himalia_server(config=AUTH) as server:
        async with aiohttp.ClientSession(cookies={"himalia-login": "forged"}) as c:
            async with c.get(server.url_for("/api/status")) as r:
                assert r.status == 401 and (await r.json())["reason"] == "invalid cookie"


async def test_random_token_by_default_and_jupyter_token_from_the_environment(himalia_server, monkeypatch):
    async with himalia_server() as a, himalia_server() as b:
        assert a.token and b.token and a.token != b.token and len(a.token) >= 32
    monkeypatch.setenv("JUPYTER_TOKEN", "from-env")
    async with himalia_server() as server:
        assert server.token == "from-env"
        assert (await server.get("/api/status")).status == 200


async def test_cors_denies_other_origins_by_default(himalia_server):
    async with himalia_server(config=AUTH) as server:
        headers = {"Authorization": f"token {TOKEN}", "Origin": "http://evil.example"}
        async with aiohttp.ClientSession() as c:
            async with c.get(server.url_for("/api/status"), headers=headers) as r:
                assert r.status == 403 and "origin http://evil.example" in (await r.json())["message"]
                assert "Access-Control-Allow-Origin" not in r.headers
            preflight = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
            async with c.options(server.url_for("/api/sessions"), headers=preflight) as r:
                assert r.status == 403
            same = {"Authorization": f"token {TOKEN}", "Origin": server.url.rstrip("/")}
            async with c.get(server.url_for("/api/status"), headers=same) as r:
                assert r.status == 200


async def test_cors_allows_the_configured_origin(himalia_server):
    config = {**AUTH, "server": {"allow_origin": "https://app.example", "allow_credentials": True}}
    async with himalia_server(config=config) as server:
        async with aiohttp.ClientSession() as c:
            preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                         "Access-Control-Request-Headers": "Authorization, Content-Type"}
            async with c.options(server.url_for("/api/sessions"), headers=preflight) as r:
                assert r.status == 204
                assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
                assert "POST" in r.headers["Access-Control-Allow-Methods"]
                assert r.headers["Access-Control-Allow-Credentials"] == "true"
            headers = {"Authorization": f"token {TOKEN}", "Origin": "https://app.example"}
            async with c.get(server.url_for("/api/status"), headers=headers) as r:
                assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == "https://app.example"


async def test_websocket_from_another_origin_is_refused(himalia_server):
    async with himalia_server(config=AUTH) as server:
        async with aiohttp.ClientSession() as c:
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await c.ws_connect(server.url_for("/api/kernels/x/channels"),
                                   headers={"Authorization": f"token {TOKEN}", "Origin": "http://evil.example"})
            assert e.value.status == 403


async def test_api_me_returns_identity_and_asked_permissions(himalia_server):
    async with himalia_server(config=AUTH) as server:
        r = await server.get("/api/me", params={"permissions": '{"contents": ["read", "write"]}'})
        body = await r.json()
        assert body["identity"]["username"]
        assert body["permissions"] == {"contents": ["read", "write"]}
        r = await server.get("/api/me", params={"permissions": "{nope"})
        assert r.status == 400 and (await r.json())["reason"] == "malformed permissions"


async def test_token_never_reaches_the_log(himalia_server, caplog):
    caplog.set_level(logging.DEBUG)
    async with himalia_server(config=AUTH) as server:
        async with aiohttp.ClientSession() as c:
            for url in (f"/?token={TOKEN}", "/api/status?token=wrong", "/api/nothing"):
                async with c.get(server.url_for(url)) as r:
                    await r.read()
            async with c.get(server.url_for("/api/status"), headers={"Authorization": f"token {TOKEN}"}) as r:
                await r.read()
    assert caplog.records, "the access log should have logged something"
    assert TOKEN not in caplog.text and "wrong" not in caplog.text


async def test_username_falls_back_when_the_uid_has_no_passwd_entry(himalia_server, monkeypatch):
    """As in a container run with an arbitrary uid: getpass.getuser() raises there."""
    import os
    import pwd

    for var in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(var, raising=False)

    def no_entry(uid):
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    async with himalia_server(config=AUTH) as server:
        r = await server.get("/api/me")
        assert r.status == 200
        assert (await r.json())["identity"]["username"] == f"uid{os.getuid()}"


async def test_invalid_allow_origin_pat_is_a_startup_error_naming_the_key(himalia_server):
    from himalia.errors import ConfigError

    config = {**AUTH, "server": {"allow_origin_pat": "https://(app.example"}}
    with pytest.raises(ConfigError) as e:
        async with himalia_server(config=config):
            pass  # pragma: no cover
    assert "[server] 'allow_origin_pat' is not a valid regular expression" in str(e.value)
    assert "https://(app.example" in str(e.value)


async def test_allow_origin_pat_allows_matching_origins_only(himalia_server):
    config = {**AUTH, "server": {"allow_origin_pat": r"https://[a-z]+\.example"}}
    async with himalia_server(config=config) as server:
        for origin, status in (("https://app.example", 200), ("https://app.example.evil", 403)):
            r = await server.get("/api/status", headers={"Origin": origin})
            assert r.status == status, origin
