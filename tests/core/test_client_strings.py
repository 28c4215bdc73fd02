"""Every string from a client is checked once, where it enters (issue 20, item 6, core part): JSON
bodies in `read_json`, the URL path and query parameters in the core middleware. A lone surrogate or
a NUL is a 400 naming the field, before any handler or provider sees it."""

from __future__ import annotations

import asyncio

import pytest
import yarl
from aiohttp import web

from himalia import Route, hookimpl, read_json

SEEN: list[object] = []


class Echo:
    """A third-party route: the checks are the core's, not a plugin's."""

    @hookimpl
    def himalia_routes(self, config):
        async def echo(request):
            body = await read_json(request, required=False)
            SEEN.append((dict(request.query), body))
            return web.json_response({"ok": True})

        return [Route("POST", "/echo/{name}", echo)]


async def raw(server, method: str, path_and_query: str, **kwargs):
    url = yarl.URL(server.url.rstrip("/") + path_and_query, encoded=True)  # sent exactly as written

    async def go():
        async with server.client.request(method, url, **kwargs) as r:
            return r.status, await r.json()

    return await asyncio.wait_for(go(), 30)


@pytest.mark.parametrize("body,field", [
    ({"path": "a\ud800.txt"}, "field 'path'"),
    ({"path": "a\x00b.txt"}, "field 'path'"),
    ({"kernel": {"name": "py\udcff"}}, "field 'kernel.name'"),
    ({"cells": [{"source": "ok"}, {"source": "\ud800"}]}, "field 'cells[1].source'"),
    ({"a\x00": 1}, "a top-level key"),
    ({"content": "\ud83d"}, "field 'content'"),
])
async def test_a_json_body_with_a_lone_surrogate_or_nul_is_refused_naming_the_field(himalia_server, body, field):
    SEEN.clear()
    async with himalia_server(plugins={"echo": Echo()}) as server:
        r = await server.post("/echo/x", json=body)
        assert r.status == 400
        answer = await r.json()
        assert answer["reason"] == "bad string" and answer["message"].startswith(field), answer
    assert SEEN == []


async def test_nul_is_accepted_in_a_contents_model_and_valid_pairs_everywhere(himalia_server):
    SEEN.clear()
    async with himalia_server(plugins={"echo": Echo()}) as server:
        r = await server.post("/echo/x", json={"content": "a\x00b", "name": "\U0001F600"})
        assert r.status == 200
    assert SEEN == [({}, {"content": "a\x00b", "name": "\U0001F600"})]


@pytest.mark.parametrize("url,reason,words", [
    ("/echo/x?path=a%00b", "bad string", "query parameter 'path' contains a NUL"),
    ("/echo/x?a%00=1", "bad string", "query parameter name"),
    ("/echo/x?path=%ED%A0%80", "bad query", "query string is not valid UTF-8"),
    ("/echo/x?path=%FF", "bad query", "query string is not valid UTF-8"),
    ("/echo/a%00b", "bad string", "contains a NUL"),
    ("/echo/%ED%A0%80", "bad path", "not valid UTF-8"),
])
async def test_a_url_with_nul_or_invalid_utf8_is_refused(himalia_server, url, reason, words):
    SEEN.clear()
    async with himalia_server(plugins={"echo": Echo()}) as server:
        status, answer = await raw(server, "POST", url)
        assert status == 400 and answer["reason"] == reason and words in answer["message"], answer
    assert SEEN == []


async def test_a_rename_to_a_lone_surrogate_is_a_400_and_moves_nothing(himalia_server):
    """It used to move the file and then answer 500, leaving it unreachable by any URL."""
    async with himalia_server() as server:
        (server.root_dir / "a.txt").write_text("keep me")
        for target in ("b\udcff.txt", "b\x00.txt"):
            r = await server.patch("/api/contents/a.txt", json={"path": target})
            assert r.status == 400 and (await r.json())["message"].startswith("field 'path'")
        for copy_from in ("a.txt\x00", "\ud800"):
            r = await server.post("/api/contents", json={"copy_from": copy_from})
            assert r.status == 400 and (await r.json())["message"].startswith("field 'copy_from'")
        status, answer = await raw(server, "GET", "/api/resolvePath?path=a%00")
        assert status == 400 and answer["reason"] == "bad string"
        assert sorted(p.name for p in server.root_dir.iterdir()) == ["a.txt"]
        assert (server.root_dir / "a.txt").read_text() == "keep me"
