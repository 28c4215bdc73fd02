"""Terminals over real HTTP and websockets: a real shell in a real pty, in the root or a cwd; resize;
several sockets; scrollback on reconnect; the session ended at DELETE, at shutdown and by culling.

Commands print computed text (`echo a-$((1+1))` prints `a-2`) so the terminal's echo of the command
line never matches what a test waits for."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from himalia import HOOKS, SERVICES, TerminalManager, hookimpl

from conftest import marked_processes, wait_for_processes
from term_ws import TermClient

TOKEN = "terminals-token"
AUTH = {"plugins": {"auth": {"token": TOKEN}}}


async def open_term(server, name: str) -> TermClient:
    ws = await server.ws_connect(f"/terminals/websocket/{name}")
    client = TermClient(ws)
    assert await client.next() == ["setup", {}]
    return client


async def new_terminal(server, **body) -> dict:
    r = await server.post("/api/terminals", json=body)
    assert r.status == 200, await r.text()
    return await r.json()


async def test_a_terminal_runs_a_command_whose_output_and_file_appear(himalia_server, process_mark):
    async with himalia_server() as server:
        model = await new_terminal(server)
        assert model["name"] == "1" and model["last_activity"].endswith("Z")
        term = await open_term(server, model["name"])
        await term.run("echo $((6*7)) > t.txt; cat t.txt")
        await term.until("42\r\n")
        assert (server.root_dir / "t.txt").read_text() == "42\n"
        await term.run('echo "root=$JUPYTER_SERVER_ROOT url=$JUPYTER_SERVER_URL pwd=$(pwd) $((2+3))"')
        out = await term.until(" 5\r\n")
        line = out[out.rindex("root="):]
        root = str(server.root_dir.resolve())
        assert f"root={root} " in line and f"pwd={root} " in line
        assert f"url={server.url} " in line
        # the shell is this test's (the marker) and the model lists it
        assert marked_processes(process_mark)
        listed = await (await server.get("/api/terminals")).json()
        assert [t["name"] for t in listed] == ["1"]
        assert listed[0]["last_activity"] >= model["last_activity"]
        await term.ws.close()


async def test_terminal_io_is_server_activity(himalia_server):
    """/api/status's last_activity follows terminal traffic, which is no HTTP request (jupyter_server
    counts its terminals too), so an idle-culling hub does not stop a server someone is typing in."""
    async with himalia_server() as server:
        await new_terminal(server, name="busy")
        term = await open_term(server, "busy")
        await term.run("echo ready-$((1+1))")
        await term.until("ready-2")
        before = (await (await server.get("/api/status")).json())["last_activity"]
        await term.run("echo typed-$((1+1))")
        await term.until("typed-2")
        after = (await (await server.get("/api/status")).json())["last_activity"]
        assert after > before
        await term.ws.close()


async def test_the_shell_is_shell_else_the_configured_command(himalia_server, monkeypatch):
    monkeypatch.setenv("SHELL", "/bin/sh")
    async with himalia_server() as server:
        await new_terminal(server, name="sh")
        term = await open_term(server, "sh")
        await term.run('echo "zero=$0 $((2+3))"')
        assert "zero=/bin/sh 5" in await term.until(" 5\r\n")
        await term.ws.close()
    config = {"plugins": {"terminals": {"shell_command": ["/bin/sh", "-c", "echo configured-$((1+1)); exec sh"]}}}
    async with himalia_server(config=config) as server:
        await new_terminal(server, name="cfg")
        term = await open_term(server, "cfg")
        await term.until("configured-2")
        await term.ws.close()


async def test_a_shell_that_cannot_start_is_a_500_naming_it(himalia_server):
    config = {"plugins": {"terminals": {"shell_command": ["/no/such/shell"]}}}
    async with himalia_server(config=config) as server:
        r = await server.post("/api/terminals", json={"name": "x"})
        assert r.status == 500 and "/no/such/shell" in (await r.json())["message"]
        assert await (await server.get("/api/terminals")).json() == []


async def test_cwd_is_relative_to_the_root_and_must_stay_inside_it(himalia_server):
    async with himalia_server() as server:
        (server.root_dir / "sub" / "dir").mkdir(parents=True)
        (server.root_dir / "file.txt").write_text("x")
        model = await new_terminal(server, name="here", cwd="sub/dir")
        assert model["name"] == "here"
        term = await open_term(server, "here")
        await term.run('echo "at=$(pwd) $((2+3))"')
        out = await term.until(" 5\r\n")
        assert f"at={(server.root_dir / 'sub' / 'dir').resolve()} " in out
        await term.ws.close()
        for cwd, words in (("..", "outside"), ("sub/../../x", "outside"), ("nope", "not a directory"),
                           ("file.txt", "not a directory"), (5, "must be a string")):
            r = await server.post("/api/terminals", json={"cwd": cwd})
            assert r.status == 400, (cwd, await r.text())
            assert words in (await r.json())["message"]
        assert [t["name"] for t in await (await server.get("/api/terminals")).json()] == ["here"]


async def test_names_are_checked_and_never_taken_twice(himalia_server):
    async with himalia_server() as server:
        await new_terminal(server, name="work")
        r = await server.post("/api/terminals", json={"name": "work"})
        assert r.status == 409 and "work" in (await r.json())["message"]
        r = await server.post("/api/terminals", json={"name": "../x"})
        assert r.status == 400
        assert (await new_terminal(server))["name"] == "1"
        assert (await new_terminal(server))["name"] == "2"
        r = await server.post("/api/terminals", data=b"{not json")
        assert r.status == 400
        assert (await server.get("/api/terminals/nope")).status == 404
        assert (await server.delete("/api/terminals/nope")).status == 404
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await server.ws_connect("/terminals/websocket/nope")
        assert e.value.status == 404
        assert (await server.get("/terminals/websocket/work")).status == 400  # not an upgrade


async def test_resize_reaches_the_pty(himalia_server):
    async with himalia_server() as server:
        await new_terminal(server, name="t")
        term = await open_term(server, "t")
        await term.set_size(50, 132)
        await term.run('echo "size=$(stty size) $((2+3))"')
        assert "size=50 132 5" in await term.until(" 5\r\n")
        await term.ws.close()


async def test_two_websockets_see_the_same_output_and_the_smallest_size_wins(himalia_server):
    async with himalia_server() as server:
        await new_terminal(server, name="shared")
        a = await open_term(server, "shared")
        b = await open_term(server, "shared")
        # sizes from two sockets: each is confirmed before the next, since the server reads the two
        # sockets independently
        await a.set_size(40, 100)
        await a.run('echo "sized $(stty size) $((20+22))"')
        await a.until("sized 40 100 42")
        await b.set_size(30, 120)
        await b.run('echo "both $(stty size) $((20+22))"')
        assert "both 30 100 42" in await b.until("both 30 100 42")
        assert "both 30 100 42" in await a.until("both 30 100 42")  # a saw b's command's output too
        await b.ws.close()  # b gone: a's size is the terminal's
        await a.run('echo "alone $(stty size) $((20+22))"')
        assert "alone 40 100 42" in await a.until("alone 40 100 42")
        await a.ws.close()


async def test_reconnect_replays_the_scrollback_and_the_terminal_survives(himalia_server):
    async with himalia_server() as server:
        await new_terminal(server, name="keep")
        first = await open_term(server, "keep")
        await first.run("echo before-$((1+1)); x=41")
        await first.until("before-2")
        await first.ws.close()  # a page reload
        again = await open_term(server, "keep")
        assert "before-2" in await again.until("before-2")  # replayed: nothing new was run
        await again.run("echo after-$((x+1))")  # the same shell: its variable is still set
        await again.until("after-42")
        await again.ws.close()


async def test_delete_ends_the_shell_and_its_jobs(himalia_server, process_mark):
    async with himalia_server() as server:
        await new_terminal(server, name="doomed")
        term = await open_term(server, "doomed")
        # a background job (its own process group under bash's job control) and one that ignores SIGHUP
        await term.run("sleep 1000 & nohup sleep 1001 >/dev/null 2>&1 & echo started-$((1+1))")
        await term.until("started-2")
        await wait_for_processes(process_mark, "sleep", 2)
        r = await server.delete("/api/terminals/doomed")
        assert r.status == 204
        messages = await term.until_closed()
        assert messages[-1] == ["disconnect", 1]
        assert not marked_processes(process_mark)
        assert (await server.get("/api/terminals/doomed")).status == 404
        assert await (await server.get("/api/terminals")).json() == []


async def test_server_shutdown_leaves_no_shell(himalia_server, process_mark):
    async with himalia_server() as server:
        for name in ("a", "b"):
            await new_terminal(server, name=name)
        term = await open_term(server, "a")
        await term.run("sleep 1000 & echo started-$((1+1))")
        await term.until("started-2")
        await wait_for_processes(process_mark, "sleep", 1)
        assert len(marked_processes(process_mark)) >= 3  # two shells and the sleep
    assert not marked_processes(process_mark)


async def test_sigterm_to_himalia_serve_leaves_no_shell(tmp_path, process_mark):
    """The real command: SIGTERM ends every terminal's session before the process exits."""
    import os

    from himalia.testing import serve_process

    root = tmp_path / "served"
    root.mkdir()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt")}
    with serve_process("--root-dir", str(root), "--token", TOKEN, env=env) as server:
        headers = server.auth_headers
        async with aiohttp.ClientSession(headers=headers) as c:
            async with c.post(server.url_for("/api/terminals"), json={"name": "bg"}) as r:
                assert r.status == 200
            ws = await c.ws_connect(server.url_for("/terminals/websocket/bg"))
            term = TermClient(ws)
            assert await term.next() == ["setup", {}]
            await term.run("nohup sleep 1002 >/dev/null 2>&1 & echo started-$((1+1))")
            await term.until("started-2")
            await wait_for_processes(process_mark, "sleep", 1)
            await ws.close()
        server.process.terminate()
        assert server.process.wait(60) == 0
    assert not marked_processes(process_mark)


async def test_a_shell_that_exits_disconnects_its_clients_and_is_forgotten(himalia_server):
    async with himalia_server() as server:
        await new_terminal(server, name="bye")
        term = await open_term(server, "bye")
        await term.run("exit")
        messages = await term.until_closed()
        assert messages[-1] == ["disconnect", 1]
        assert (await server.get("/api/terminals/bye")).status == 404


async def test_inactive_terminals_are_culled(himalia_server, process_mark):
    config = {"plugins": {"terminals": {"cull_inactive_timeout": 0.5, "cull_interval": 0.2}}}
    async with himalia_server(config=config) as server:
        await new_terminal(server, name="idle")
        term = await open_term(server, "idle")
        messages = await term.until_closed()  # the culler ends it: the socket is told
        assert messages[-1] == ["disconnect", 1]
        assert await (await server.get("/api/terminals")).json() == []
    assert not marked_processes(process_mark)


async def test_culling_is_off_by_default(himalia_server):
    from himalia.app import load

    config, _ = load(config_data={})
    assert config.section("terminals").cull_inactive_timeout == 0


async def test_malformed_messages_are_ignored(himalia_server):
    async with himalia_server() as server:
        await new_terminal(server, name="m")
        term = await open_term(server, "m")
        for bad in ("not json", "[]", '["stdin"]', '["set_size", "a", 2]', '["set_size", 0, 0]', '{"a": 1}',
                    '["unknown", 1]'):
            await term.ws.send_str(bad)
        await term.ws.send_bytes(b"binary")
        await term.run("echo alive-$((1+1))")
        await term.until("alive-2")
        await term.ws.close()


async def test_terminals_can_be_turned_off(himalia_server):
    async with himalia_server(config={"plugins": {"terminals": {"enabled": False}}}) as server:
        assert server.app[__import__("himalia").SERVICES].terminals is None
        assert (await server.get("/api/terminals")).status == 404
        assert (await server.post("/api/terminals", json={})).status == 404
        spec = json.loads(await (await server.get("/api/spec.yaml")).text())
        assert "/api/terminals" not in spec["paths"]


async def test_the_service_is_there_while_terminals_are_on(himalia_server):
    """What the lab plugin reads for `terminalsAvailable`."""
    from himalia import SERVICES, TerminalManager

    async with himalia_server() as server:
        service = server.app[SERVICES].terminals
        assert isinstance(service, TerminalManager)
        created = await service.create(name="svc")
        assert await service.list() == [created]
        await service.delete("svc")
        assert await service.list() == []


@pytest.mark.parametrize("path", ["/terminals/websocket/1", "/api/terminals", "/api/terminals/1"])
async def test_strangers_are_refused(himalia_server, path):
    async with himalia_server(config=AUTH) as server:
        await new_terminal(server)
        async with aiohttp.ClientSession() as anonymous:
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await anonymous.ws_connect(server.url_for(path))
            assert e.value.status == 401
            for method in ("GET", "POST", "DELETE"):
                async with anonymous.request(method, server.url_for(path)) as r:
                    assert r.status == 401
        assert len(await (await server.get("/api/terminals")).json()) == 1


async def test_cookie_login_opens_the_websocket(himalia_server):
    """JupyterLab's websockets carry no token on the same host: the login cookie must do."""
    async with himalia_server(config=AUTH) as server:
        await new_terminal(server, name="c")
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.get(server.url_for(f"/api/status?token={TOKEN}")) as r:
                assert r.status == 200
            ws = await asyncio.wait_for(browser.ws_connect(server.url_for("/terminals/websocket/c")), 30)
            term = TermClient(ws)
            assert await term.next() == ["setup", {}]
            await ws.close()


class SeesAtStartup:
    """A plugin whose name sorts before 'terminals': its resource starts first among the resources, and
    must still see the terminals service (a service, entered before every resource)."""

    def __init__(self):
        self.seen = "not started"

    @hookimpl
    def himalia_resources(self, config):
        async def look(app):
            self.seen = app[SERVICES].terminals
            yield

        return [look]


async def test_every_plugin_sees_the_terminals_service_from_start_up(himalia_server):
    early = SeesAtStartup()
    async with himalia_server(plugins={"aaa_early": early}) as server:
        assert early.seen is server.app[SERVICES].terminals
        assert isinstance(early.seen, TerminalManager)
        assert server.app[HOOKS].page_config(server.app)["terminalsAvailable"] is True


async def test_terminals_off_means_no_service_from_start_up(himalia_server):
    early = SeesAtStartup()
    async with himalia_server(plugins={"aaa_early": early},
                              config={"plugins": {"terminals": {"enabled": False}}}) as server:
        assert early.seen is None and server.app[SERVICES].terminals is None
        assert server.app[HOOKS].page_config(server.app)["terminalsAvailable"] is False


class SeesAtShutdown:
    """An observer whose resource, at its exit, looks for terminals still running."""

    def __init__(self):
        self.left: list[dict] | None = None

    @hookimpl
    def himalia_resources(self, config):
        async def look(app):
            yield
            self.left = await app[SERVICES].terminals.list()

        return [look]


async def test_terminals_end_before_any_plugin_resource_exits(himalia_server, process_mark):
    """The shutdown phase ends every terminal before resources exit, whatever the plugins' names."""
    for name in ("aaa_first", "zzz_last"):
        late = SeesAtShutdown()
        async with himalia_server(plugins={name: late}) as server:
            await new_terminal(server, name="t")
        assert late.left == [], name
        assert not marked_processes(process_mark)
