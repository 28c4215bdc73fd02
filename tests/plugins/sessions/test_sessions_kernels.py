"""The session workflows end to end, with real ipykernel kernels behind the real kernels plugin."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from himalia import SERVICES, Provider, SessionRecord, hookimpl
from himalia_sessions.store_sqlite import open_sqlite_store

from .conftest import kernel_pid, process_alive

NB = {"path": "work/analysis.ipynb", "name": "analysis.ipynb", "type": "notebook", "kernel": {"name": "python3"}}


async def kernel_ids(server) -> set[str]:
    r = await server.get("/api/kernels")
    assert r.status == 200
    return {k["id"] for k in await r.json()}


async def create(server, **fields) -> dict:
    r = await server.post("/api/sessions", json={**NB, **fields})
    assert r.status == 201, await r.text()
    return await r.json()


async def test_create_and_delete_workflows(serve, events):
    async with serve() as server:
        (server.root_dir / "work").mkdir()
        store = server.app[SERVICES].session_store

        r = await server.post("/api/sessions", json=NB)
        assert r.status == 201
        session = await r.json()
        assert r.headers["Location"] == f"/api/sessions/{session['id']}"
        kernel = session["kernel"]
        assert session == {"id": session["id"], "path": "work/analysis.ipynb", "name": "analysis.ipynb",
                           "type": "notebook", "kernel": kernel,
                           "notebook": {"path": "work/analysis.ipynb", "name": "analysis.ipynb"}}
        assert kernel["name"] == "python3"
        assert {"id", "name", "last_activity", "execution_state", "connections"} <= set(kernel)
        assert await kernel_ids(server) == {kernel["id"]}
        row = await store.get(session["id"])
        assert (row.path, row.name, row.type, row.kernel_id) == (
            "work/analysis.ipynb", "analysis.ipynb", "notebook", kernel["id"])
        assert events.created == [session]

        # the kernel runs in the notebook's directory and knows its session
        pid = kernel_pid(kernel["id"])
        assert os.readlink(f"/proc/{pid}/cwd") == str((server.root_dir / "work").resolve())
        environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        assert b"JPY_SESSION_NAME=work/analysis.ipynb" in environ

        r = await server.get(f"/api/sessions/{session['id']}")
        assert r.status == 200
        assert (await r.json())["kernel"]["id"] == kernel["id"]
        r = await server.get("/api/sessions")
        assert [s["id"] for s in await r.json()] == [session["id"]]

        r = await server.delete(f"/api/sessions/{session['id']}")
        assert r.status == 204
        assert not process_alive(pid)
        assert await kernel_ids(server) == set()
        assert await store.get(session["id"]) is None
        assert events.deleted == [session["id"]]
        r = await server.get(f"/api/sessions/{session['id']}")
        assert r.status == 404
        r = await server.delete(f"/api/sessions/{session['id']}")
        assert r.status == 404


async def kernel_info(ws) -> None:
    """Send kernel_info_request on the shell channel (legacy JSON frames); return once the reply
    and the kernel's idle status after it have arrived, so the kernel is quiet."""
    msg_id = uuid.uuid4().hex
    await ws.send_json({"channel": "shell", "header": {
        "msg_id": msg_id, "msg_type": "kernel_info_request", "session": "sessions-test", "username": "test",
        "date": "2026-01-01T00:00:00.000000Z", "version": "5.3"}, "parent_header": {}, "metadata": {},
        "content": {}})
    replied = idle = False
    while not (replied and idle):
        frame = await ws.receive_json()
        if frame.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        replied = replied or frame["msg_type"] == "kernel_info_reply"
        idle = idle or (frame["msg_type"] == "status" and frame["content"]["execution_state"] == "idle")


async def test_session_kernel_model_is_live(serve):
    async with serve() as server:
        session = await create(server)
        kernel_id = session["kernel"]["id"]
        before = session["kernel"]["last_activity"]
        async with server.ws_connect(f"/api/kernels/{kernel_id}/channels?session_id=sessions-test") as ws:
            await asyncio.wait_for(kernel_info(ws), 60)
            r = await server.get(f"/api/kernels/{kernel_id}")
            direct = await r.json()
            r = await server.get(f"/api/sessions/{session['id']}")
            via_session = (await r.json())["kernel"]
            # the same live model; last_activity and the state may move on between the two reads (a
            # late answer to the start-up kernel_info probes makes the kernel busy for a moment)
            assert via_session["last_activity"] >= direct["last_activity"]
            moving = {"last_activity": None, "execution_state": None}
            assert {**via_session, **moving} == {**direct, **moving}
            assert via_session["connections"] == 1
            assert via_session["last_activity"] > before
            assert via_session["execution_state"] in ("idle", "busy")


async def test_second_post_for_a_path_returns_its_session(serve, events):
    async with serve() as server:
        first = await create(server)
        r = await server.post("/api/sessions", json={**NB, "name": "other name"})
        assert r.status == 201
        again = await r.json()
        assert again["id"] == first["id"] and again["kernel"]["id"] == first["kernel"]["id"]
        assert r.headers["Location"] == f"/api/sessions/{first['id']}"
        assert await kernel_ids(server) == {first["kernel"]["id"]}
        assert len(events.created) == 1


async def test_concurrent_posts_for_one_path_make_one_session(serve):
    async with serve() as server:
        answers = await asyncio.gather(*(server.post("/api/sessions", json=NB) for _ in range(3)))
        assert [r.status for r in answers] == [201, 201, 201]
        ids = {(await r.json())["id"] for r in answers}
        assert len(ids) == 1
        assert len(await kernel_ids(server)) == 1
        assert len(await server.app[SERVICES].session_store.list()) == 1


async def test_post_with_a_running_kernel_id_shares_it(serve):
    async with serve() as server:
        r = await server.post("/api/kernels", json={"name": "python3"})
        assert r.status == 201
        kernel_id = (await r.json())["id"]
        console = await create(server, path="console-1", type="console", name="", kernel={"id": kernel_id})
        assert console["kernel"]["id"] == kernel_id and "notebook" not in console
        assert await kernel_ids(server) == {kernel_id}

        r = await server.post("/api/sessions", json={**NB, "kernel": {"id": "no-such-kernel"}})
        assert r.status == 400
        assert (await r.json())["message"] == "no running kernel with id no-such-kernel"


async def test_patch_renames_without_touching_the_kernel(serve):
    async with serve() as server:
        session = await create(server)
        pid = kernel_pid(session["kernel"]["id"])
        r = await server.patch(f"/api/sessions/{session['id']}",
                               json={"path": "renamed.ipynb", "name": "renamed.ipynb", "type": "notebook"})
        assert r.status == 200
        patched = await r.json()
        assert (patched["id"], patched["path"], patched["name"]) == (session["id"], "renamed.ipynb", "renamed.ipynb")
        assert patched["notebook"] == {"path": "renamed.ipynb", "name": "renamed.ipynb"}
        assert patched["kernel"]["id"] == session["kernel"]["id"] and process_alive(pid)
        row = await server.app[SERVICES].session_store.get(session["id"])
        assert (row.path, row.name) == ("renamed.ipynb", "renamed.ipynb")
        # the old path has no session any more, the new one has this one
        r = await server.post("/api/sessions", json={**NB, "path": "renamed.ipynb"})
        assert (await r.json())["id"] == session["id"]


async def test_patch_switches_to_a_new_kernel_and_shuts_the_old_one_down(serve):
    async with serve() as server:
        session = await create(server)
        old = session["kernel"]["id"]
        old_pid = kernel_pid(old)
        r = await server.patch(f"/api/sessions/{session['id']}", json={"kernel": {"name": "python3"}})
        assert r.status == 200
        new = (await r.json())["kernel"]["id"]
        assert new != old
        assert await kernel_ids(server) == {new}
        assert not process_alive(old_pid)
        assert (await server.app[SERVICES].session_store.get(session["id"])).kernel_id == new

        r = await server.patch(f"/api/sessions/{session['id']}", json={"kernel": {"name": "no-such-spec"}})
        assert r.status == 404
        assert "python3" in (await r.json())["message"]
        assert (await server.app[SERVICES].session_store.get(session["id"])).kernel_id == new
        assert await kernel_ids(server) == {new}


async def test_patch_to_a_running_kernel_keeps_kernels_other_sessions_use(serve):
    async with serve() as server:
        a = await create(server, path="a.ipynb")
        shared = a["kernel"]["id"]
        b = await create(server, path="b.ipynb", kernel={"id": shared})
        r = await server.post("/api/kernels", json={"name": "python3"})
        spare = (await r.json())["id"]

        # b leaves the shared kernel: a still uses it, so it keeps running
        r = await server.patch(f"/api/sessions/{b['id']}", json={"kernel": {"id": spare}})
        assert r.status == 200 and (await r.json())["kernel"]["id"] == spare
        assert await kernel_ids(server) == {shared, spare}

        # a leaves it too: nobody uses it, so it is shut down
        r = await server.patch(f"/api/sessions/{a['id']}", json={"kernel": {"id": spare}})
        assert r.status == 200
        assert await kernel_ids(server) == {spare}

        r = await server.patch(f"/api/sessions/{a['id']}", json={"kernel": {"id": "gone"}})
        assert r.status == 400

        # deleting one of two sessions on a kernel keeps it for the other
        r = await server.delete(f"/api/sessions/{a['id']}")
        assert r.status == 204 and await kernel_ids(server) == {spare}
        r = await server.delete(f"/api/sessions/{b['id']}")
        assert r.status == 204 and await kernel_ids(server) == set()


async def test_unknown_kernel_name_records_nothing(serve):
    async with serve() as server:
        r = await server.post("/api/sessions", json={**NB, "kernel": {"name": "no-such-spec"}})
        assert r.status == 404
        error = await r.json()
        assert "no-such-spec" in error["message"] and "python3" in error["message"]
        assert await server.app[SERVICES].session_store.list() == []
        assert await kernel_ids(server) == set()


async def test_kernel_that_fails_to_start_records_nothing(serve, events):
    data_dir = Path(os.environ["JUPYTER_DATA_DIR"])  # per test, see tests/conftest.py
    spec_dir = data_dir / "kernels" / "broken"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [str(data_dir / "no-such-interpreter"), "-f", "{connection_file}"],
        "display_name": "Broken", "language": "python"}))
    async with serve() as server:
        r = await server.post("/api/sessions", json={**NB, "kernel": {"name": "broken"}})
        assert r.status == 503  # the server's failure, not the client's; 500 is for bugs
        error = await r.json()
        assert set(error) == {"message", "reason"} and "broken" in error["message"]
        assert await server.app[SERVICES].session_store.list() == []
        assert await kernel_ids(server) == set()
        assert events.created == []


async def test_kernel_killed_outside_the_server_drops_its_session(serve, events):
    # no automatic restart: the first death is final (the restarter then reports the kernel dead)
    config = {"plugins": {"local": {"restart_limit": 0, "restart_check_interval": 0.2}}}
    async with serve(config=config) as server:
        keep = await create(server, path="keep.ipynb")
        doomed = await create(server, path="doomed.ipynb")
        doomed_kernel = doomed["kernel"]["id"]
        # a kernel that answered once is fully up (and watched); then it dies under the server's feet
        async with server.ws_connect(f"/api/kernels/{doomed_kernel}/channels?session_id=sessions-test") as ws:
            await asyncio.wait_for(kernel_info(ws), 60)
        os.kill(kernel_pid(doomed_kernel), signal.SIGKILL)

        await events.until(lambda: doomed["id"] in events.deleted)
        assert [k for k, _ in events.stopped] == [doomed_kernel]
        # the dead kernel was shut down with its last session, not left listed as dead
        assert await kernel_ids(server) == {keep["kernel"]["id"]}
        r = await server.get("/api/sessions")
        assert [s["id"] for s in await r.json()] == [keep["id"]]
        assert await server.app[SERVICES].session_store.get(doomed["id"]) is None
        r = await server.get(f"/api/sessions/{doomed['id']}")
        assert r.status == 404
        assert events.deleted == [doomed["id"]]


async def test_session_of_a_kernel_deleted_through_the_kernels_api_is_dropped(serve, events):
    async with serve() as server:
        session = await create(server)
        r = await server.delete(f"/api/kernels/{session['kernel']['id']}")
        assert r.status == 204
        r = await server.get("/api/sessions")
        assert await r.json() == []
        r = await server.delete(f"/api/sessions/{session['id']}")
        assert r.status == 404
        assert events.deleted == [session["id"]]


async def test_restart_with_a_database_file_serves_no_stale_sessions(serve, tmp_path, events):
    config = {"plugins": {"sessions": {"database": str(tmp_path / "sessions.db")}}}
    async with serve(config=config) as server:
        session = await create(server)
    # the kernel went with the server; its row stayed in the file
    async with open_sqlite_store(tmp_path / "sessions.db") as store:
        assert [r.id for r in await store.list()] == [session["id"]]

    async with serve(config=config) as server:
        r = await server.get("/api/sessions")
        assert await r.json() == []
        assert await server.app[SERVICES].session_store.list() == []
        assert events.deleted == [session["id"]]
        # the file keeps working for new sessions
        fresh = await create(server)
    async with open_sqlite_store(tmp_path / "sessions.db") as store:
        assert [r.id for r in await store.list()] == [fresh["id"]]


async def test_session_without_a_kernel_name_gets_the_default_kernel(serve):
    async with serve() as server:
        session = await create(server, kernel=None)
        assert session["kernel"]["name"] == "python3"
        assert await kernel_ids(server) == {session["kernel"]["id"]}


class DictStore:
    """Another SessionStore, as a third-party plugin could write one: the manager needs nothing more."""

    def __init__(self) -> None:
        self.rows: dict[str, SessionRecord] = {}

    async def add(self, record):
        if record.id in self.rows:
            raise ValueError(record.id)
        self.rows[record.id] = replace(record)

    async def get(self, session_id):
        row = self.rows.get(session_id)
        return replace(row) if row else None

    async def find(self, *, path=None, kernel_id=None):
        return [replace(r) for r in self.rows.values()
                if path in (None, r.path) and kernel_id in (None, r.kernel_id)]

    async def update(self, record):
        if record.id not in self.rows:
            return False
        self.rows[record.id] = replace(record)
        return True

    async def remove(self, session_id):
        return self.rows.pop(session_id, None) is not None

    async def list(self):
        return [replace(r) for r in self.rows.values()]


async def test_another_session_store_plugin_can_replace_sqlite(serve):
    store = DictStore()

    class StorePlugin:
        @hookimpl
        def himalia_session_store_providers(self):
            @asynccontextmanager
            async def factory(app):
                yield store

            return [Provider("dict", factory)]

    async with serve(plugins={"dict_store": StorePlugin()}, config={"server": {"session_store": "dict"}}) as server:
        assert server.app[SERVICES].session_store is store
        session = await create(server)
        assert list(store.rows) == [session["id"]]
        r = await server.patch(f"/api/sessions/{session['id']}", json={"path": "moved.ipynb"})
        assert (await r.json())["path"] == store.rows[session["id"]].path == "moved.ipynb"
        r = await server.delete(f"/api/sessions/{session['id']}")
        assert r.status == 204 and store.rows == {}
        assert await kernel_ids(server) == set()


async def test_console_session_for_a_path_that_is_no_file_runs_in_its_directory(serve):
    async with serve() as server:
        (server.root_dir / "work").mkdir()
        session = await create(server, path="work/console-1-5f3a", type="console", name="Console 1")
        assert "notebook" not in session
        pid = kernel_pid(session["kernel"]["id"])
        assert os.readlink(f"/proc/{pid}/cwd") == str((server.root_dir / "work").resolve())


async def test_session_whose_directory_is_missing_runs_in_the_nearest_one_with_a_warning(serve, caplog):
    """jupyter_server's fallback, kept (clients name directories not made yet), but no longer silent:
    the warning names the path asked for and the directory used."""
    async with serve() as server:
        (server.root_dir / "work").mkdir()
        with caplog.at_level("WARNING", logger="himalia.local"):
            session = await create(server, path="work/gone/deeper/x.ipynb")
        pid = kernel_pid(session["kernel"]["id"])
        assert os.readlink(f"/proc/{pid}/cwd") == str((server.root_dir / "work").resolve())
        [warning] = [r.getMessage() for r in caplog.records if r.name == "himalia.local"
                     and "not a directory" in r.getMessage()]
        assert "'work/gone/deeper'" in warning and "runs in 'work' instead" in warning


async def test_session_path_outside_the_root_is_refused(serve):
    async with serve() as server:
        r = await server.post("/api/sessions", json={**NB, "path": "../outside.ipynb"})
        assert 400 <= r.status < 500
        assert set(await r.json()) == {"message", "reason"}
        assert await server.app[SERVICES].session_store.list() == []
        assert await kernel_ids(server) == set()


async def test_without_a_contents_service_the_kernel_runs_in_the_documents_directory(serve):
    async with serve(disable=["contents"]) as server:
        assert server.app[SERVICES].contents is None
        (server.root_dir / "work").mkdir()
        session = await create(server)
        pid = kernel_pid(session["kernel"]["id"])
        assert os.readlink(f"/proc/{pid}/cwd") == str((server.root_dir / "work").resolve())


def json_schema(schema, components):
    """An OpenAPI 3.0 schema as JSON Schema: `$ref`s inlined, `nullable` as a "null" type."""
    if isinstance(schema, list):
        return [json_schema(s, components) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        return json_schema(components[schema["$ref"].rsplit("/", 1)[1]], components)
    out = {k: json_schema(v, components) for k, v in schema.items() if k != "nullable"}
    if schema.get("nullable"):
        out["type"] = [schema["type"], "null"]
    return out


async def test_responses_match_the_published_schemas(serve):
    import jsonschema

    async with serve() as server:
        spec = json.loads(await (await server.get("/api/spec.yaml")).text())
        components = spec["components"]["schemas"]
        paths = spec["paths"]

        def check(path, method, status, body):
            response = paths[path][method]["responses"][str(status)]
            schema = response["content"]["application/json"]["schema"]
            jsonschema.validate(body, json_schema(schema, components))

        r = await server.post("/api/sessions", json=NB)
        check("/api/sessions", "post", r.status, session := await r.json())
        r = await server.post("/api/sessions", json={**NB, "path": "c", "type": "console", "name": None})
        check("/api/sessions", "post", r.status, await r.json())
        r = await server.get("/api/sessions")
        check("/api/sessions", "get", r.status, listed := await r.json())
        assert len(listed) == 2
        r = await server.patch(f"/api/sessions/{session['id']}", json={"name": None})
        check("/api/sessions/{session_id}", "patch", r.status, await r.json())
        r = await server.get("/api/sessions/nope")
        check("/api/sessions/{session_id}", "get", r.status, await r.json())
        r = await server.post("/api/sessions", json={**NB, "kernel": {"name": "nope"}})
        check("/api/sessions", "post", r.status, await r.json())
        r = await server.post("/api/sessions", data="{")
        check("/api/sessions", "post", r.status, await r.json())
        with pytest.raises(jsonschema.ValidationError):  # the check can fail
            check("/api/sessions", "post", 201, {**session, "kernel": {"id": 5}})


async def test_location_includes_the_base_url(serve):
    async with serve(config={"server": {"base_url": "/hub/user/ada/"}}) as server:
        r = await server.post("/api/sessions", json=NB)
        assert r.status == 201
        session = await r.json()
        assert r.headers["Location"] == f"/hub/user/ada/api/sessions/{session['id']}"
        r = await server.get(r.headers["Location"].removeprefix("/hub/user/ada"))
        assert (await r.json())["id"] == session["id"]


async def test_event_hooks_carry_the_app_of_their_server(serve, himalia_server):
    """Two servers in one process: each observer call says which server the session or kernel is on
    (implementations written without `app`, like the `events` fixture's, keep working)."""

    class PerApp:
        def __init__(self) -> None:
            self.calls: list[tuple[str, object]] = []

        @hookimpl
        def himalia_session_created(self, session, app):
            self.calls.append(("created", app))

        @hookimpl
        def himalia_session_deleted(self, session_id, app):
            self.calls.append(("deleted", app))

        @hookimpl
        def himalia_kernel_started(self, kernel_id, name, app):
            self.calls.append(("started", app))

        @hookimpl
        def himalia_kernel_stopped(self, kernel_id, reason, app):
            self.calls.append(("stopped", app))

    one, two = PerApp(), PerApp()
    async with serve(plugins={"per_app": one}) as a, himalia_server(plugins={"per_app": two}) as b:
        for server in (a, b):
            session = await create(server)
            assert (await server.delete(f"/api/sessions/{session['id']}")).status == 204
    for observer, server in ((one, a), (two, b)):
        assert [what for what, _ in observer.calls] == ["started", "created", "stopped", "deleted"]
        assert all(app is server.app for _, app in observer.calls)
