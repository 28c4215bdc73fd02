"""Events over real HTTP and websockets: clients emit validated events, subscribers receive them, and
Himalia's own contents and kernel actions arrive under jupyter_server's schema ids; plugins register
schemas with `himalia_event_schemas` and emit through `app[SERVICES].events`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from himalia import SERVICES, EventBus, Route, hookimpl

HELLO = "https://example.org/himalia-tests/hello/v1"
HELLO_SCHEMA = {"$id": HELLO, "version": "1", "title": "Hello", "type": "object", "required": ["greeting"],
                "properties": {"greeting": {"type": "string"}, "count": {"type": "integer"}}}
CONTENTS = "https://events.jupyter.org/jupyter_server/contents_service/v1"
KERNEL_ACTIONS = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"
TIMEOUT = 30


class Hello:
    """A third-party plugin: registers a schema and emits events of it from its own route."""

    @hookimpl
    def himalia_event_schemas(self, config):
        return [HELLO_SCHEMA]

    @hookimpl
    def himalia_routes(self, config):
        async def wave(request: web.Request) -> web.Response:
            request.app[SERVICES].events.emit(schema_id=HELLO, data={"greeting": "from a plugin"})
            return web.Response(status=204)

        return [Route("POST", "/hello/wave", wave)]


class Subscriber:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws
        self.events: list[dict] = []

    async def until(self, predicate, timeout: float = TIMEOUT) -> dict:
        """The first event (already received or next) that `predicate` accepts."""
        for event in self.events:
            if predicate(event):
                return event

        async def go() -> dict:
            while True:
                frame = await self.ws.receive()
                assert frame.type == aiohttp.WSMsgType.TEXT, frame
                event = json.loads(frame.data)
                self.events.append(event)
                if predicate(event):
                    return event
        return await asyncio.wait_for(go(), timeout)


async def subscribe(server) -> Subscriber:
    return Subscriber(await server.ws_connect("/api/events/subscribe"))


async def test_a_client_event_reaches_subscribers(himalia_server):
    async with himalia_server(plugins={"hello": Hello()}) as server:
        first, second = await subscribe(server), await subscribe(server)
        r = await server.post("/api/events", json={"schema_id": HELLO, "version": "1",
                                                   "data": {"greeting": "hi", "count": 2}})
        assert r.status == 204, await r.text()
        for sub in (first, second):
            event = await sub.until(lambda e: e["schema_id"] == HELLO)
            assert event == {"schema_id": HELLO, "greeting": "hi", "count": 2}
        # with a timestamp, in jupyter_server's documented form or plain ISO 8601
        for ts in ("2022-05-26T13:50:00+05:00Z", "2026-01-02T03:04:05Z", "2026-01-02T03:04:05+00:00"):
            r = await server.post("/api/events", json={"schema_id": HELLO, "version": "1", "timestamp": ts,
                                                       "data": {"greeting": ts}})
            assert r.status == 204, (ts, await r.text())
            await first.until(lambda e, ts=ts: e.get("greeting") == ts)
        await first.ws.close()
        await second.ws.close()


@pytest.mark.parametrize("body, words", [
    ({"version": "1", "data": {}}, "'schema_id'"),
    ({"schema_id": HELLO, "data": {}}, "'version'"),
    ({"schema_id": HELLO, "version": "1"}, "'data'"),
    ({"schema_id": "https://nowhere/v1", "version": "1", "data": {}}, "no event schema 'https://nowhere/v1'"),
    ({"schema_id": HELLO, "version": "2", "data": {"greeting": "x"}}, "not '2'"),
    ({"schema_id": HELLO, "version": "1", "data": []}, "'data' must be a JSON object"),
    ({"schema_id": HELLO, "version": "1", "data": {}}, "'greeting' is a required property"),
    ({"schema_id": HELLO, "version": "1", "data": {"greeting": 5}}, "data/greeting"),
    ({"schema_id": HELLO, "version": "1", "data": {"greeting": "x"}, "timestamp": "yesterday"}, "'timestamp'"),
], ids=["no-schema-id", "no-version", "no-data", "unknown-schema", "wrong-version", "data-not-object",
        "missing-property", "wrong-type", "bad-timestamp"])
async def test_a_bad_event_is_a_400_naming_what_is_wrong(himalia_server, body, words):
    """Validated even with no subscriber (jupyter_events alone would not validate then)."""
    async with himalia_server(plugins={"hello": Hello()}) as server:
        r = await server.post("/api/events", json=body)
        assert r.status == 400
        answer = await r.json()
        assert words in answer["message"] and answer["reason"] == "bad event", answer


async def test_a_malformed_body_is_a_400(himalia_server):
    async with himalia_server() as server:
        for raw in (b"nope", b"[]", b""):
            assert (await server.post("/api/events", data=raw)).status == 400


async def test_contents_actions_are_events_with_jupyter_servers_schema(himalia_server):
    async with himalia_server() as server:
        sub = await subscribe(server)
        r = await server.put("/api/contents/a.txt", json={"type": "file", "format": "text", "content": "x"})
        assert r.status == 201
        save = await sub.until(lambda e: e.get("action") == "save")
        assert save == {"schema_id": CONTENTS, "action": "save", "path": "a.txt"}
        assert (await server.get("/api/contents/a.txt")).status == 200
        assert await sub.until(lambda e: e.get("action") == "get") == {"schema_id": CONTENTS, "action": "get",
                                                                       "path": "a.txt"}
        assert (await server.patch("/api/contents/a.txt", json={"path": "b.txt"})).status == 200
        assert await sub.until(lambda e: e.get("action") == "rename") == {
            "schema_id": CONTENTS, "action": "rename", "path": "b.txt", "source_path": "a.txt"}
        assert (await server.post("/api/contents", json={"copy_from": "b.txt"})).status == 201
        copy = await sub.until(lambda e: e.get("action") == "copy")
        assert copy["source_path"] == "b.txt" and copy["path"] == "b-Copy1.txt"
        assert (await server.delete("/api/contents/b.txt")).status == 204
        assert await sub.until(lambda e: e.get("action") == "delete") == {"schema_id": CONTENTS,
                                                                          "action": "delete", "path": "b.txt"}
        # a failed action is not an event
        assert (await server.delete("/api/contents/nope.txt")).status == 404
        assert (await server.post("/api/contents/dir", json={"type": "directory"})).status in (201, 404)
        await sub.ws.close()
        assert not [e for e in sub.events if e.get("path") == "nope.txt"]


async def test_kernel_starts_and_stops_are_events(himalia_server):
    async with himalia_server() as server:
        sub = await subscribe(server)
        r = await server.post("/api/kernels", json={"name": "python3"})
        assert r.status == 201, await r.text()
        kernel_id = (await r.json())["id"]
        started = await sub.until(lambda e: e["schema_id"] == KERNEL_ACTIONS and e["action"] == "start")
        assert started["kernel_id"] == kernel_id and started["kernel_name"] == "python3"
        assert started["status"] == "success"
        assert (await server.delete(f"/api/kernels/{kernel_id}")).status == 204
        stopped = await sub.until(lambda e: e["schema_id"] == KERNEL_ACTIONS and e["action"] == "shutdown")
        assert stopped["kernel_id"] == kernel_id and stopped["status"] == "success"
        assert stopped["msg"].endswith("stopped: deleted")
        await sub.ws.close()


async def test_kernel_restarts_are_events(himalia_server):
    async with himalia_server() as server:
        sub = await subscribe(server)
        kernel_id = (await (await server.post("/api/kernels", json={"name": "python3"})).json())["id"]
        assert (await server.post(f"/api/kernels/{kernel_id}/restart")).status == 200
        restarted = await sub.until(lambda e: e["schema_id"] == KERNEL_ACTIONS and e["action"] == "restart")
        assert restarted["kernel_id"] == kernel_id and restarted["status"] == "success"
        assert restarted["msg"].endswith("restarted: restart requested")
        assert (await server.delete(f"/api/kernels/{kernel_id}")).status == 204
        await sub.ws.close()


async def test_kernel_interrupts_are_events(himalia_server):
    async with himalia_server() as server:
        sub = await subscribe(server)
        kernel_id = (await (await server.post("/api/kernels", json={"name": "python3"})).json())["id"]
        assert (await server.post(f"/api/kernels/{kernel_id}/interrupt")).status == 204
        event = await sub.until(lambda e: e["schema_id"] == KERNEL_ACTIONS and e["action"] == "interrupt")
        assert event["kernel_id"] == kernel_id and event["status"] == "success" and event["status_code"] == 204
        assert (await server.delete(f"/api/kernels/{kernel_id}")).status == 204
        await sub.ws.close()


async def test_a_plugin_registers_a_schema_and_emits_through_the_service(himalia_server):
    async with himalia_server(plugins={"hello": Hello()}) as server:
        bus = server.app[SERVICES].events
        assert isinstance(bus, EventBus)
        sub = await subscribe(server)  # builds the EventLogger
        assert {HELLO, CONTENTS, KERNEL_ACTIONS} <= set((await bus.logger()).schemas.schema_ids)
        assert (await server.post("/hello/wave")).status == 204
        assert await sub.until(lambda e: e["schema_id"] == HELLO) == {"schema_id": HELLO,
                                                                      "greeting": "from a plugin"}
        await sub.ws.close()


async def test_a_schema_that_does_not_register_is_logged_naming_the_plugin(himalia_server, caplog):
    class Broken:
        @hookimpl
        def himalia_event_schemas(self, config):
            return [{"$id": "https://example.org/broken/v1", "version": "1", "properties": {"__bad": {}}}]

    async with himalia_server(plugins={"broken": Broken(), "hello": Hello()}) as server:
        r = await server.post("/api/events", json={"schema_id": HELLO, "version": "1", "data": {"greeting": "x"}})
        assert r.status == 204  # the others work
        r = await server.post("/api/events", json={"schema_id": "https://example.org/broken/v1", "version": "1",
                                                   "data": {}})
        assert r.status == 400
    assert "plugin 'broken' gave an event schema that does not register (https://example.org/broken/v1)" in caplog.text


def test_jupyter_events_is_not_imported_at_start_up():
    """It costs a second or more (jsonschema's format checkers): loaded on first use, in a thread."""
    import subprocess
    import sys

    code = ("import asyncio, sys, tempfile\n"
            "from himalia.app import create_app, load\n"
            "from himalia.serve import start\n"
            "from aiohttp import web\n"
            "async def main():\n"
            "    config, plugins = load(config_data={'server': {'root_dir': tempfile.gettempdir()}})\n"
            "    runner = web.AppRunner(create_app(config, plugins))\n"
            "    await start(runner)\n"
            "    print('jupyter_events' in sys.modules, 'nbconvert' in sys.modules)\n"
            "    await runner.cleanup()\n"
            "asyncio.run(main())\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "False"], done.stdout + done.stderr


async def test_schemas_from_files(himalia_server, tmp_path: Path):
    path = tmp_path / "hello.json"
    path.write_text(json.dumps({**HELLO_SCHEMA, "$id": "https://example.org/from-a-file/v1"}))

    class FromFile:
        @hookimpl
        def himalia_event_schemas(self, config):
            return [path]

    async with himalia_server(plugins={"fromfile": FromFile()}) as server:
        r = await server.post("/api/events", json={"schema_id": "https://example.org/from-a-file/v1",
                                                   "version": "1", "data": {"greeting": "x"}})
        assert r.status == 204


def test_our_schemas_keep_jupyter_servers_ids_and_shapes():
    import jupyter_server
    import yaml

    from himalia_events.schemas import CONTENTS_SCHEMA, KERNEL_ACTIONS_SCHEMA

    base = Path(jupyter_server.__file__).parent / "event_schemas"
    for ours, theirs in ((CONTENTS_SCHEMA, "contents_service/v1.yaml"),
                         (KERNEL_ACTIONS_SCHEMA, "kernel_actions/v1.yaml")):
        reference = yaml.safe_load((base / theirs).read_text())
        assert ours["$id"] == reference["$id"] and str(ours["version"]) == str(reference["version"])
        assert ours["required"] == reference["required"]
        assert set(ours["properties"]) == set(reference["properties"])
        assert ours["properties"]["action"]["enum"] == reference["properties"]["action"]["enum"]


async def test_strangers_are_refused(himalia_server):
    async with himalia_server(config={"plugins": {"auth": {"token": "t"}}}) as server:
        async with aiohttp.ClientSession() as anonymous:
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await anonymous.ws_connect(server.url_for("/api/events/subscribe"))
            assert e.value.status == 401
            async with anonymous.post(server.url_for("/api/events"), json={}) as r:
                assert r.status == 401
        assert (await server.get("/api/events/subscribe")).status == 400  # not an upgrade


async def test_every_plugin_sees_the_event_bus_from_start_up(himalia_server):
    """A plugin whose name sorts before 'events' emits from its resource at start-up: the bus is a
    service, entered before every resource."""
    seen = []

    class Early:
        @hookimpl
        def himalia_resources(self, config):
            async def look(app):
                seen.append(app[SERVICES].events)
                yield

            return [look]

    async with himalia_server(plugins={"aaa_early": Early()}) as server:
        assert seen == [server.app[SERVICES].events] and isinstance(seen[0], EventBus)


async def test_kernel_events_reach_only_the_server_whose_kernel_it_is(himalia_server, tmp_path):
    """Two servers in one process: the kernel hooks carry the app, so each server's subscribers see
    its own kernels only."""
    other_root = tmp_path / "other"
    other_root.mkdir()
    async with himalia_server() as one, himalia_server(root_dir=other_root) as two:
        sub_one, sub_two = await subscribe(one), await subscribe(two)
        r = await two.post("/api/kernels", json={"name": "python3"})
        assert r.status == 201, await r.text()
        kernel_id = (await r.json())["id"]
        started = await sub_two.until(lambda e: e["schema_id"] == KERNEL_ACTIONS and e["action"] == "start")
        assert started["kernel_id"] == kernel_id
        assert (await two.delete(f"/api/kernels/{kernel_id}")).status == 204
        await sub_two.until(lambda e: e["schema_id"] == KERNEL_ACTIONS and e["action"] == "shutdown")
        # a save on server one, after server two's kernel events: server one saw no kernel event
        assert (await one.put("/api/contents/x.txt", json={"type": "file", "format": "text", "content": ""})).status == 201
        await sub_one.until(lambda e: e["schema_id"] == CONTENTS and e["action"] == "save")
        assert not [e for e in sub_one.events if e["schema_id"] == KERNEL_ACTIONS]
        await sub_one.ws.close()
        await sub_two.ws.close()
