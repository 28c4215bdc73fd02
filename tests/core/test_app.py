"""The app: JSON errors, base_url, core routes, middlewares' order, lifecycle resources, status, spec."""

from __future__ import annotations

import json

import pytest
from aiohttp import web

from himalia import CliOption, Middleware, NotFound, Route, __version__, hookimpl, read_json
from himalia.app import create_app, load
from himalia.errors import StartupError

OPEN = {"allow_unauthenticated_access": True}


TRAIL = web.RequestKey("trail", list)


class Sample:
    """A plugin exercising routes, middlewares, resources, status and openapi hooks."""

    def __init__(self):
        self.events: list[str] = []

    @hookimpl
    def himalia_routes(self, config):
        async def echo(request):
            return web.json_response(await read_json(request))

        async def missing(request):
            raise NotFound(f"no such thing: {request.match_info['name']}")

        async def crash(request):
            raise RuntimeError("secret internals")

        async def order(request):
            return web.json_response(request[TRAIL])

        return [Route("POST", "/api/echo", echo), Route("GET", "/api/things/{name}", missing),
                Route("GET", "/api/crash", crash), Route("GET", "/api/order", order)]

    @hookimpl
    def himalia_middlewares(self, config):
        def mark(label):
            @web.middleware
            async def mw(request, handler):
                request.setdefault(TRAIL, []).append(label)
                return await handler(request)
            return mw

        return [Middleware(mark("late"), order=10), Middleware(mark("early"), order=-5),
                Middleware(mark("mid"), order=0)]

    @hookimpl
    def himalia_resources(self, config):
        async def resource(app):
            self.events.append("start")
            yield
            self.events.append("stop")

        return [resource]

    @hookimpl
    def himalia_status(self, app):
        return {"sample": {"ok": True}}

    @hookimpl
    def himalia_openapi(self, config):
        return {"paths": {"/api/echo": {"post": {"responses": {"200": {"description": "echo"}}}}}}

    @hookimpl
    def himalia_cli_options(self):
        return [CliOption("--sample-flag", "plugins.sample.flag")]


@pytest.fixture
def sample():
    return Sample()


async def test_api_needs_no_auth_and_names_the_version(himalia_server):
    async with himalia_server() as server:
        async with server.client.get(server.url_for("/api"), headers={"Authorization": ""}) as r:
            assert r.status == 200
            assert await r.json() == {"version": __version__}


async def test_errors_are_json_with_message_and_reason(himalia_server, sample):
    async with himalia_server(plugins={"sample": sample}) as server:
        r = await server.post("/api/echo", data=b"{not json")
        assert r.status == 400
        body = await r.json()
        assert body["reason"] == "malformed json" and "not valid JSON" in body["message"]

        r = await server.post("/api/echo", data=b"[1, 2]")
        assert r.status == 400 and "must be a JSON object, got list" in (await r.json())["message"]

        r = await server.get("/api/things/teapot")
        assert r.status == 404
        assert await r.json() == {"message": "no such thing: teapot", "reason": "not found"}

        r = await server.get("/api/crash")
        assert r.status == 500
        text = await r.text()
        assert "secret internals" not in text and "Traceback" not in text
        assert json.loads(text)["reason"] == "internal error"

        r = await server.get("/api/no/such/route")
        assert r.status == 404 and (await r.json())["message"] == "no such URL: /api/no/such/route"

        r = await server.request("DELETE", "/api/status")
        assert r.status == 405 and "DELETE is not allowed" in (await r.json())["message"]


async def test_body_over_max_body_size_is_413(himalia_server, sample):
    async with himalia_server(plugins={"sample": sample}, config={"server": {"max_body_size": 1024}}) as server:
        r = await server.post("/api/echo", data=json.dumps({"x": "a" * 2000}))
        assert r.status == 413
        assert "max_body_size (1024 bytes)" in (await r.json())["message"]
        r = await server.post("/api/echo", json={"x": "small"})
        assert r.status == 200 and await r.json() == {"x": "small"}


async def test_base_url_prefixes_every_route(himalia_server, sample):
    async with himalia_server(plugins={"sample": sample}, config={"server": {"base_url": "/jh/user/"}}) as server:
        assert server.url.endswith("/jh/user/")
        assert (await server.get("/api/status")).status == 200
        assert (await server.post("/api/echo", json={})).status == 200
        async with server.client.get(server.url.replace("/jh/user/", "/api/status")) as r:
            assert r.status == 404


async def test_middlewares_run_in_order_around_authentication(himalia_server, sample):
    async with himalia_server(plugins={"sample": sample}) as server:
        r = await server.get("/api/order")
        assert await r.json() == ["early", "mid", "late"]
        async with server.client.get(server.url_for("/api/order"), headers={"Authorization": "token wrong"}) as r:
            assert r.status == 401  # only the pre-auth middleware ran; the handler did not


async def test_resources_start_and_stop_with_the_app(himalia_server, sample):
    async with himalia_server(plugins={"sample": sample}):
        assert sample.events == ["start"]
    assert sample.events == ["start", "stop"]


async def test_status_is_fed_by_services_and_plugins(himalia_server, sample):
    async with himalia_server(plugins={"sample": sample}) as server:
        body = await (await server.get("/api/status")).json()
        assert set(body) >= {"started", "last_activity", "connections", "kernels", "sample"}
        assert body["sample"] == {"ok": True}
        assert body["kernels"] == 0 and body["connections"] == 0
        assert body["started"].endswith("Z")


async def test_spec_is_valid_json_yaml_and_merges_plugins(himalia_server, sample):
    async with himalia_server(plugins={"sample": sample}) as server:
        r = await server.get("/api/spec.yaml")
        assert r.status == 200 and r.content_type == "text/x-yaml"
        spec = json.loads(await r.text())
        assert spec["openapi"].startswith("3.")
        assert {"/api", "/api/status", "/api/spec.yaml", "/api/echo", "/api/me"} <= set(spec["paths"])


async def test_spec_describes_every_registered_route(himalia_server):
    """Keep the spec honest: a route without a spec entry fails here."""
    async with himalia_server() as server:
        spec = json.loads(await (await server.get("/api/spec.yaml")).text())
        for route in server.app.router.routes():
            path = route.resource.canonical
            if path in ("/",) or route.method == "HEAD":
                continue
            # aiohttp patterns like {path:.*} are written {path} in OpenAPI
            import re
            openapi_path = re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", path)
            assert openapi_path in spec["paths"], f"{route.method} {path} is not in /api/spec.yaml"
            assert route.method.lower() in spec["paths"][openapi_path], f"{route.method} {path} missing"


def test_two_plugins_on_one_route_is_a_startup_error(tmp_path):
    class A:
        @hookimpl
        def himalia_routes(self, config):
            async def h(request):
                return web.Response()
            return [Route("GET", "/api/x", h)]

    config, loaded = load(config_data={"server": {"root_dir": str(tmp_path), **OPEN}}, entry_points=False,
                          extra_plugins={"a": A(), "b": A()})
    with pytest.raises(StartupError, match=r"route GET /api/x from plugin 'b' conflicts with plugin 'a'"):
        create_app(config, loaded)


def test_plugin_cli_option_sets_a_config_key(tmp_path, sample, monkeypatch):
    from dataclasses import dataclass

    from himalia import ConfigSection, setting
    from himalia.cli import build_from_argv

    @dataclass(frozen=True)
    class SampleConfig:
        flag: str = setting("off", "A flag.")

    class Sections:
        @hookimpl
        def himalia_config_sections(self):
            return [ConfigSection("sample", SampleConfig)]

    import himalia.app as app_module

    real = app_module.load_plugins
    monkeypatch.setattr(app_module, "load_plugins",
                        lambda disabled, **kw: real(disabled, extra={"sample": sample, "sections": Sections()}))
    app, config = build_from_argv(["--root-dir", str(tmp_path), "--sample-flag", "on", "--port", "0"])
    assert config.section("sample").flag == "on"
    assert config.server.port == 0 and config.server.root_dir == str(tmp_path)


async def test_serve_init_and_the_fixture_build_the_app_through_one_function(tmp_path, himalia_server, monkeypatch):
    """Issue 14: tests used to start the app along another path than `himalia serve` does."""
    import himalia.app as app_module
    from himalia.app import init
    from himalia.cli import build_from_argv

    built = []
    real = app_module.build_app

    def spy(*args, **kwargs):
        built.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(app_module, "build_app", spy)
    build_from_argv(["--root-dir", str(tmp_path), "--token", "t"])  # what cmd_serve runs
    assert len(built) == 1
    init(["--root-dir", str(tmp_path), "--token", "t"])  # python -m aiohttp.web himalia.app:init
    assert len(built) == 2
    async with himalia_server() as server:
        assert (await server.get("/api/status")).status == 200
    assert len(built) == 3


async def test_api_with_a_trailing_slash_answers_the_version(himalia_server):
    """jupyter_server answers GET /api/ like GET /api (its OpenAPI spec lists it); we answered 404."""
    import aiohttp

    async with himalia_server() as server:
        async with aiohttp.ClientSession() as anonymous:
            for path in ("/api", "/api/"):
                async with anonymous.get(server.url_for(path)) as r:
                    assert r.status == 200 and (await r.json())["version"], path


def test_url_path_joins_base_url_whatever_its_slashes():
    from himalia import url_path

    assert url_path("/", "/api") == "/api"
    assert url_path("", "api") == "/api"
    assert url_path("/jh/user/", "/api") == "/jh/user/api"
    assert url_path("jh/user", "api/x") == "/jh/user/api/x"
    assert url_path("/jh/", "/") == "/jh/"


async def test_locations_honour_a_base_url_written_without_slashes(himalia_server):
    """The contents plugin joined base_url by hand and wrote `jh/api/contents/...` for base_url "jh"."""
    async with himalia_server(config={"server": {"base_url": "jh"}}) as server:
        r = await server.post("/api/contents", json={"type": "file"})
        assert r.status == 201 and r.headers["Location"].startswith("/jh/api/contents/untitled")
        spec = await (await server.get("/api/spec.yaml")).json(content_type=None)
        assert spec["servers"] == [{"url": "/jh"}]
